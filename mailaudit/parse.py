"""Bytes -> ParsedMessage: addresses, UTC date, text body, own text vs quoted, defects. Never raises on bad mail."""

from __future__ import annotations

import base64
import codecs
import email
import email.header
import email.parser
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass, field
from email.message import Message

from mailaudit import mime
from mailaudit.addresses import bulk_reason, normalise_address
from mailaudit.config import ParseConfig
from mailaudit.zoning import fingerprint, split_own_text

MIN_YEAR_TS = 473385600  # 1985-01-01: earlier dates in mail are clock errors
FUTURE_SLACK_S = 2 * 86400
MAX_HEADER_CHARS = 65536
MAX_RECIPIENTS = 2000
MAX_PARTS = 500
MAX_DEPTH = 50
MAX_ATTACHMENT_NAMES = 20

_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|sv|wg|tr|rif|antw|vs|ref|r|i)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*|\[[^\]]{1,40}\]\s*)+",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw|vs|r|ref)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(?:fw|fwd|wg|tr|i)\s*:", re.IGNORECASE)
_MSGID = re.compile(r"<([^<>\s]{1,500})>")
_WS = re.compile(r"\s+")


@dataclass(slots=True)
class ParsedMessage:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    date_ts: int | None
    from_addr: str
    from_name: str
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    subject: str
    norm_subject: str
    is_reply: bool
    is_forward: bool
    body_text: str
    own_text: str
    own_fp: str
    quote_fp: str
    has_attachment: bool
    attachment_names: list[str]
    bulk: str
    gm_thrid: str | None
    gm_labels: list[str]
    size: int
    defects: list[str] = field(default_factory=list)

    def content_hash(self) -> str:
        """Identity of a message when its Message-ID cannot be trusted (copies in several folders)."""
        own = " ".join((self.own_text or self.body_text[:2000]).split()).lower()  # = _WS.sub(" ", ..).strip()
        key = f"{self.from_addr}\x1f{self.date_ts}\x1f{self.norm_subject}\x1f{own}"
        if not self.from_addr or self.date_ts is None:  # too little to tell messages apart: use the whole text
            key += f"\x1f{self.body_text[:8000]}\x1f{self.subject}"
        return hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()


def normalise_subject(subject: str) -> str:
    """Drop Re:/Fw:/AW:/SV:/[list] prefixes, fold case and space: the key for subject threading."""
    return _WS.sub(" ", _SUBJECT_PREFIX.sub("", subject)).strip().lower()


def parse_message(
    raw: bytes, cfg: ParseConfig | None = None, envelope_ts: int | None = None, now: float | None = None
) -> ParsedMessage:
    """Parse one message; anything wrong is recorded in `defects`, never raised."""
    cfg = cfg or ParseConfig()
    try:
        return _parse(raw, cfg, envelope_ts, now)
    except (RecursionError, MemoryError, ValueError, TypeError, AttributeError, LookupError, IndexError) as exc:
        # the last line of defence: keep what a headers-only read can give, with the crash as a defect
        return _fallback(raw, cfg, f"parser_crash:{type(exc).__name__}")


def _fallback(raw: bytes, cfg: ParseConfig, defect: str) -> ParsedMessage:
    defects = [defect]
    try:
        msg = email.parser.BytesParser().parsebytes(raw[:MAX_HEADER_CHARS * 4], headersonly=True)
        headers = _lower_headers(msg)
    except Exception:
        headers = {}
    from_name, from_addr = _first_address(str(headers.get("from", "")), defects)
    subject = str(headers.get("subject", ""))[:1000]
    body = _salvage_body(raw, cfg.body_max_chars)
    return ParsedMessage(
        message_id=_first_msgid(str(headers.get("message-id", ""))), in_reply_to=None, references=[],
        date_ts=None, from_addr=from_addr, from_name=from_name, to=[], cc=[], subject=subject,
        norm_subject=normalise_subject(subject), is_reply=False, is_forward=False, body_text=body,
        own_text=body[: cfg.own_text_max_chars], own_fp="", quote_fp="", has_attachment=False, attachment_names=[],
        bulk="", gm_thrid=None, gm_labels=[], size=len(raw), defects=defects,
    )


def _parse(raw: bytes, cfg: ParseConfig, envelope_ts: int | None, now: float | None) -> ParsedMessage:
    defects: list[str] = []
    try:
        msg = mime.message_from_bytes(raw)  # the stdlib's compat32 tree (the fast policy), built faster
    except Exception as exc:  # the stdlib parser is lenient, but never trust it fully
        # e.g. RecursionError on 1,000 nested multiparts: keep the headers, read the body as plain text
        defects.append("too_deeply_nested" if isinstance(exc, RecursionError) else f"unparseable:{type(exc).__name__}")
        msg = email.parser.BytesParser().parsebytes(raw, headersonly=True)
        msg.set_payload(_salvage_body(raw, cfg.body_max_chars))
        del msg["content-type"]
        del msg["content-transfer-encoding"]
    if msg.defects:
        defects.extend(sorted({type(d).__name__ for d in msg.defects}))
    headers = _lower_headers(msg)
    from_name, from_addr = _first_address(_raw_header(msg, "from"), defects)
    if not from_addr:
        defects.append("missing_from")
    subject = _header(msg, "subject", defects)
    message_id = _first_msgid(headers.get("message-id", ""))
    if not message_id:
        defects.append("missing_message_id")
    refs = _MSGID.findall(headers.get("references", ""))[:200]
    in_reply_to = _first_msgid(headers.get("in-reply-to", ""))
    date_ts = _date(headers.get("date", ""), defects, envelope_ts, now)
    body, has_att, att_names = _body(msg, cfg, defects)
    zones = split_own_text(body)
    own = zones.own[: cfg.own_text_max_chars]
    return ParsedMessage(
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=refs,
        date_ts=date_ts,
        from_addr=from_addr,
        from_name=from_name,
        to=_addresses(_raw_header(msg, "to"), defects),
        cc=_addresses(_raw_header(msg, "cc"), defects),
        subject=subject[:1000],
        norm_subject=normalise_subject(subject)[:300],
        is_reply=bool(in_reply_to or refs or _REPLY_PREFIX.match(subject)),
        is_forward=bool(_FORWARD_PREFIX.match(subject)),
        body_text=body[: cfg.body_max_chars],
        own_text=own,
        own_fp=fingerprint(own),
        quote_fp=fingerprint(zones.quoted, quoted=True),
        has_attachment=has_att,
        attachment_names=att_names,
        bulk=bulk_reason(headers, from_addr),
        gm_thrid=(headers.get("x-gm-thrid") or "").strip() or None,
        gm_labels=_gmail_labels(headers.get("x-gmail-labels", "")),
        size=len(raw),
        defects=defects,
    )


_MIME_NOISE = re.compile(rb"^(?:--\S*|Content-[A-Za-z-]+:.*|\s*)\r?$\n?", re.MULTILINE)


def _salvage_body(raw: bytes, limit: int) -> str:
    """The words of a body the MIME parser gave up on: boundaries and part headers dropped."""
    cut = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    body = _MIME_NOISE.sub(b"", raw[cut : cut + limit * 16])
    return body[:limit].decode("utf-8", "replace")


def _lower_headers(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in msg.items():
        k = key.lower()
        if k not in out:
            out[k] = str(value)[:MAX_HEADER_CHARS] if not isinstance(value, str) else value[:MAX_HEADER_CHARS]
    return out


def _header(msg: Message, name: str, defects: list[str]) -> str:
    """Decode an RFC 2047 header into text, surviving unknown charsets and broken encodings."""
    return _decode_words(_raw_header(msg, name), defects, name)


def _raw_header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    return str(value)[:MAX_HEADER_CHARS]


def _decode_words(value: str, defects: list[str], name: str) -> str:
    if "=?" not in value:
        return _WS.sub(" ", value).strip()
    try:
        parts = email.header.decode_header(value)
    except Exception:
        defects.append(f"bad_encoded_header:{name}")
        return _WS.sub(" ", value).strip()
    out = []
    for chunk, charset in parts[:2000]:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        out.append(_decode_bytes(chunk, charset, defects, f"header:{name}"))
    return _WS.sub(" ", "".join(out)).strip()


def _decode_bytes(data: bytes, charset: str | None, defects: list[str], where: str) -> str:
    """Decode with the declared charset; when it is unknown or lies, ask charset-normalizer."""
    if charset:
        charset = charset.strip().strip('"').lower()
        try:
            codecs.lookup(charset)
        except LookupError:
            defects.append(f"unknown_charset:{where}")
            charset = None
    if charset:
        try:
            return data.decode(charset)
        except (UnicodeDecodeError, LookupError):
            defects.append(f"bad_charset:{where}")
    else:
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
    import charset_normalizer  # only for mail that lies about its charset: keeps startup light

    best = charset_normalizer.from_bytes(data[:262144]).best()
    if best is not None:
        try:
            return data.decode(best.encoding, errors="replace")
        except LookupError:
            pass
    return data.decode("utf-8", errors="replace")


def _first_address(value: str, defects: list[str]) -> tuple[str, str]:
    found = _addresses(value, defects)
    return (found[0][1], found[0][0]) if found else ("", "")


def _addresses(value: str, defects: list[str]) -> list[tuple[str, str]]:
    """(normalised address, display name) pairs; capped so a 50,000-recipient header stays cheap. Split the raw
    header first and decode RFC 2047 names after: a decoded name may hold commas, quotes or '@'."""
    if not value:
        return []
    try:
        pairs = _simple_addresses(value) or email.utils.getaddresses([value])
    except Exception:
        defects.append("bad_address_header")
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, addr in pairs:
        if "@" not in addr:
            continue
        norm = normalise_address(addr)
        if norm in seen:
            continue
        seen.add(norm)
        if "=?" in name:
            name = _decode_words(name, defects, "address")
        out.append((norm, name.strip().strip('"').strip()[:200]))
        if len(out) >= MAX_RECIPIENTS:
            defects.append("too_many_recipients")
            break
    return out


_SIMPLE_ADDR = re.compile(r"^\s*([^<>,]*?)\s*<([^<>\s,]+@[^<>\s,]+)>\s*$|^\s*([^<>\s,]+@[^<>\s,]+)\s*$")


def _simple_addresses(value: str) -> list[tuple[str, str]] | None:
    """Fast path for the common header (no quotes, comments or groups); None sends it to getaddresses."""
    if '"' in value or "(" in value or ";" in value or "\\" in value:
        return None
    out = []
    for piece in value.split(","):
        if not piece.strip():
            continue
        m = _SIMPLE_ADDR.match(piece)
        if m is None:
            return None
        out.append((m.group(1) or "", m.group(2) or m.group(3)))
    return out


def _first_msgid(value: str) -> str | None:
    m = _MSGID.search(value)
    if m:
        return m.group(1)
    value = value.strip()
    return value[:500] if value and " " not in value else None


def _date(value: str, defects: list[str], envelope_ts: int | None, now: float | None) -> int | None:
    """UTC epoch seconds; a missing or absurd Date is a defect, falling back to the envelope date."""
    ts: int | None = None
    if value.strip():
        try:
            parsed = email.utils.parsedate_tz(value)
            ts = int(email.utils.mktime_tz(parsed)) if parsed else None
        except (TypeError, ValueError, OverflowError, IndexError):
            ts = None
        if ts is None:
            defects.append("unparseable_date")
        elif not MIN_YEAR_TS <= ts <= (now or time.time()) + FUTURE_SLACK_S:
            defects.append("absurd_date")
            ts = None
    else:
        defects.append("missing_date")
    if ts is None and envelope_ts is not None:
        defects.append("date_from_envelope")
        ts = envelope_ts
    return ts


def _walk(msg: Message, defects: list[str]):
    """Iterative, bounded walk: a 1,000-level multipart cannot blow the stack or the clock."""
    stack = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > MAX_PARTS:
            defects.append("too_many_parts")
            return
        if part.is_multipart():
            if depth >= MAX_DEPTH:
                defects.append("too_deeply_nested")
                continue
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((p, depth + 1) for p in reversed(payload))
            continue
        yield part


def _body(msg: Message, cfg: ParseConfig, defects: list[str]) -> tuple[str, bool, list[str]]:
    plain: str | None = None
    html: str | None = None
    names: list[str] = []
    has_att = False
    for part in _walk(msg, defects):
        ctype = part.get_content_type()
        disp = str(part.get("content-disposition") or "").lower()
        try:
            filename = part.get_filename()
        except Exception:
            filename = "unnamed"
            defects.append("bad_filename")
        if filename or disp.startswith("attachment") or not ctype.startswith("text/"):
            if ctype.startswith(("text/", "message/", "multipart/")) and not filename and "attach" not in disp:
                continue
            has_att = True
            if filename and len(names) < MAX_ATTACHMENT_NAMES:
                names.append(_WS.sub(" ", str(filename))[:200])
            continue
        if ctype == "text/plain" and plain is None:
            plain = _part_text(part, cfg.body_max_chars * 4, defects)
        elif ctype == "text/html" and html is None:
            html = _part_text(part, cfg.html_max_bytes, defects)
    if plain is not None and plain.strip():
        return plain, has_att, names
    if html:
        return html_to_text(html[: cfg.html_max_bytes], defects), has_att, names
    if plain is None and html is None and not has_att:
        defects.append("no_text_body")
    return plain or "", has_att, names


def _part_text(part: Message, limit: int, defects: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.append("bad_transfer_encoding")
        data = None
    if data is None:
        raw = part.get_payload()
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else b""
    for defect in getattr(part, "defects", []):  # e.g. bad base64 padding, found while decoding
        name = type(defect).__name__
        if name not in defects:
            defects.append(name)
        if name.startswith("InvalidBase64"):
            data = _salvage_base64(data)
    if b"\x00" in data[:limit]:
        defects.append("nul_bytes")
        data = data.replace(b"\x00", b"")
    return _decode_bytes(data[:limit], part.get_content_charset(), defects, "body")


def _salvage_base64(data: bytes) -> bytes:
    """The words of a broken base64 body: its valid characters, cut to whole quanta, decoded."""
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    try:
        return base64.b64decode(clean[: len(clean) // 4 * 4])
    except ValueError:
        return data


def html_to_text(html: str, defects: list[str] | None = None) -> str:
    """Readable text from an HTML body (html2text: links and images dropped, no hard wrapping)."""
    import html2text  # only HTML-only mail needs it: a small sync starts faster without

    conv = html2text.HTML2Text()
    conv.body_width = 0
    conv.ignore_links = True
    conv.ignore_images = True
    conv.ignore_emphasis = True
    conv.ignore_tables = True
    try:
        return conv.handle(html)
    except Exception:
        if defects is not None:
            defects.append("bad_html")
        return re.sub(r"<[^>]{0,2000}>", " ", html)


def _gmail_labels(value: str) -> list[str]:
    if not value:
        return []
    labels = [v.strip().strip('"') for v in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', value)]
    return [lab for lab in labels if lab][:100]
