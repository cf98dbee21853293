"""Split a plain-text body into the author's own text and the quoted/forwarded rest.

Reply and forward markers of the common clients (Gmail, Apple, Outlook in several languages, Lotus
Notes) start the quoted zone; '>' lines are quoted wherever they stand; the signature block (a '-- '
delimiter, a phone's "Sent from", or a closing followed by a few short lines) is cut from the own text.
mail-parser-reply was tried first and cost ~110 us of regex per message, half the import budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MAX_SCAN = 65536
# The first line that starts a signature: a '-- ' or '__' delimiter, or a phone's "Sent from" line. One
# multiline search over the text, not two matches per line ([^\S\n] is \s within a line).
_SIG_START = re.compile(
    r"^(?:(?:-- ?|--[^\S\n]*|__+[^\S\n]*)$|"
    r"[^\S\n]*(?:Sent from my \w+|Sent from (?:Mail|Outlook|Yahoo Mail)\b|Get Outlook for \w+|"
    r"Von meinem \w+ gesendet|Envoyé de mon \w+|Enviado desde mi \w+))",
    re.IGNORECASE | re.MULTILINE,
)
_CLOSING = re.compile(
    r"^\s*(?:thanks(?: again| so much| a lot)?|thank you(?: again)?|many thanks|thx|tks|ty|cheers|best|"
    r"best wishes|best regards|kind regards|warm regards|warmly|warmest|regards|rgds|br|sincerely|"
    r"yours(?: truly| sincerely)?|all the best|take care|talk soon|cordially|respectfully|love|"
    r"mit freundlichen grüßen|viele grüße|grüße|gruß|lg|cordialement|bien à vous|saludos|un saludo|"
    r"atentamente|cordiali saluti|met vriendelijke groet)\s*[,;:]?\s*(?:-+\s*)?[A-Z]?[a-z]*\s*$",
    re.IGNORECASE,
)

# Each marker starts the quoted/forwarded zone at the beginning of its match.
_CUT_MARKERS = re.compile(
    "|".join(
        [
            r"^[ \t>]*-{2,}[ \t]*Forwarded by\b",  # Lotus Notes
            r"^[ \t>]*-{2,}[ \t]*(?:Original|Forwarded) Message[ \t]*-{2,}",  # Outlook, Gmail
            r"^[ \t]*-{5,}[ \t]*Original Message",
            r"^[ \t]*Begin forwarded message:",  # Apple Mail
            r"^[ \t]*_{8,}[ \t]*\n[ \t]*From:",  # Outlook web separator
            # Outlook-style header block, in the languages mail clients write it in
            r"^[ \t]*\*?(?:From|Von|De|Da|Van|Från|Fra|Od)[ \t]?:\*?[ \t].+\n"
            r"(?:[ \t]*\*?(?:Sent|Date|To|Cc|Subject|Gesendet|Datum|An|Betreff|Envoyé|Objet|À|Enviado|Fecha|"
            r"Para|Asunto|Inviato|Oggetto|A|Verzonden|Aan|Onderwerp|Skickat|Till|Ämne)[ \t]?:\*?.*\n){2,}",
            # Gmail/Apple (may wrap once). "(?:line\n)?rest", not "line\n?rest": the latter backtracks over both
            # lines at once for every line starting with "On" (~80 us a message, half the zoning time)
            r"^[ \t]*On\b(?:[^\n]{0,200}\n)?[^\n]{0,400}\bwrote:[ \t]*$",
            r"^[ \t]*Le\b(?:[^\n]{0,200}\n)?[^\n]{0,400}\ba écrit[ \t]*:[ \t]*$",
            r"^[ \t]*Am\b(?:[^\n]{0,200}\n)?[^\n]{0,400}\bschrieb[^\n]{0,80}:[ \t]*$",
            r"^[ \t]*El\b(?:[^\n]{0,200}\n)?[^\n]{0,400}\bescribió[ \t]*:[ \t]*$",
            r"^[ \t]*(?:Il|Op)\b(?:[^\n]{0,200}\n)?[^\n]{0,400}\b(?:ha scritto|schreef)[ \t]*:[ \t]*$",
            # Lotus Notes reply header: "Name@DOMAIN" / date line / ... / "To:"
            r"^[^\n]{1,120}\n[ \t]*\d{1,2}/\d{1,2}/\d{2,4}[ \t]+\d{1,2}:\d{2}(?:[ \t]*[AP]M)?[^\n]*\n"
            r"(?:[ \t]*\n){0,3}[ \t]*To:",
            r"^[ \t]*From:[ \t]+[^\n]{1,120}\d{1,2}/\d{1,2}/\d{2,4}[ \t]+\d{1,2}:\d{2}",  # Lotus inline From
        ]
    ),
    re.MULTILINE | re.IGNORECASE,
)
_QUOTED_LINE = re.compile(r"^[ \t]*>")
_SPACE = re.compile(r"[ \t\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")
_FP_DROP = re.compile(r"[^a-z0-9]+")
_SUBJECT_LINE = re.compile(r"^[ \t>]*\*?Subject:", re.IGNORECASE)


@dataclass(frozen=True)
class Zones:
    own: str
    quoted: str


def split_own_text(body: str) -> Zones:
    """The author's own words (no quotes, forwards or signature) and everything quoted below them."""
    text = body[:_MAX_SCAN].replace("\r\n", "\n").replace("\r", "\n")
    low = text.lower() if text.isascii() else None  # for the prefilters, lowered once
    head, quoted = _cut_at_marker(text, low)
    if ">" in head:  # most own text quotes nothing inline: skip the line-by-line pass
        own_lines, quoted_lines = [], []
        for line in head.split("\n"):
            (quoted_lines if _QUOTED_LINE.match(line) else own_lines).append(line)
        if quoted_lines:
            head = "\n".join(own_lines)
            quoted = "\n".join(quoted_lines) + ("\n" + quoted if quoted else "")
            low = head.lower() if low is not None else None
    own = _strip_signature(head, low)
    return Zones(own=_tidy(own), quoted=quoted)


def _may_match(low: str | None, end: int, needles: tuple[str, ...]) -> bool:
    """False only where a marker pattern cannot match text[:end]: an ASCII text (`low` is its lower case, in
    which IGNORECASE is plain lower-casing) holding none of the literal pieces each alternative needs. A regex
    pass over 8 KB of text costs ~0.1 ms; these checks a few microseconds each."""
    return low is None or any(low.find(n, 0, end) >= 0 for n in needles)


# one literal that each _CUT_MARKERS alternative must contain (in ASCII text); every alternative but the
# first three also needs a colon, and the From: header block three of them
_CUT_PLAIN = ("forwarded by", "original message", "forwarded message")
_CUT_NEEDLES = (*_CUT_PLAIN, "wrote:", "schrieb", "ha scritto", "schreef", "to:", "from:")
_SIG_NEEDLES = ("--", "__", "sent from", "get outlook", "von meinem", "enviado desde")


def _may_cut(low: str | None, end: int) -> bool:
    """_may_match for the cut markers; text without a colon (common in short notes) needs only three checks."""
    colons = low.count(":", 0, end) if low is not None else 3
    return colons >= 3 or _may_match(low, end, _CUT_NEEDLES if colons else _CUT_PLAIN)


def _cut_at_marker(text: str, low: str | None) -> tuple[str, str]:
    match = _CUT_MARKERS.search(text) if _may_cut(low, len(text)) else None
    if not match:
        return text, ""
    return text[: match.start()], text[match.start() :]


def _strip_signature(head: str, low: str | None) -> str:
    """Cut the signature block: a '-- ' delimiter, a 'Sent from my phone' line, or a closing
    ('Thanks,', 'Best regards') followed only by a few short name/title/phone lines.

    A closing that ends in '!' or '.' ("Thanks!") is kept: it may be the message itself.
    """
    text = head.rstrip()
    start = _SIG_START.search(text) if _may_match(low, len(text), _SIG_NEEDLES) else None
    lines = text[: start.start()].split("\n")[:-1] if start else text.split("\n")
    last = len(lines)
    for i in range(max(0, last - 9), last):
        if _CLOSING.match(lines[i]) and _is_sig_block(lines[i + 1 :]) and any(x.strip() for x in lines[:i]):
            lines = lines[:i]
            break
    return "\n".join(lines)


def _is_sig_block(lines: list[str]) -> bool:
    content = [ln for ln in lines if ln.strip()]
    return len(content) <= 7 and all(len(ln.strip()) <= 80 for ln in content)


def _tidy(text: str) -> str:
    if "  " in text or "\t" in text or "\u00a0" in text:  # a regex pass over plain text costs ~150 us
        text = _SPACE.sub(" ", text)  # never spans lines: the same as per line
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return (_BLANKS.sub("\n\n", text) if "\n\n\n" in text else text).strip()


def fingerprint(text: str, quoted: bool = False) -> str:
    """A short normalised key of the first words of a text, used to match a reply to its parent.

    For quoted text the reply/forward header (up to its Subject: line) and '>' marks are skipped first.
    """
    if quoted:
        lines = text.split("\n")[:80]
        start = 1
        for i, line in enumerate(lines[:25]):
            if _SUBJECT_LINE.match(line):
                start = i + 1
                break
        kept: list[str] = []
        for line in lines[start:]:
            stripped = line.strip(" \t>")
            if stripped:
                kept.append(stripped)
            if sum(len(k) for k in kept) > 200:
                break
        text = " ".join(kept)
    norm = _FP_DROP.sub("", text[:400].lower())
    return norm[:48] if len(norm) >= 16 else ""
