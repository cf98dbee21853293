"""Generate a large synthetic mbox for benchmarks: realistic sizes, replies with quotes, some HTML."""

from __future__ import annotations

import base64
import bisect
import itertools
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

WORDS = (  # noqa: SIM905 - readable as prose
    "the deal numbers look fine but we still need the signed confirmation from their side before friday "
    "please call me when you get a chance thanks for the update about the pipeline capacity and the new "
    "contract terms I will forward the resume to our team lead and let you know what she says about it"
).split()


def _para(rng: random.Random, n: int, words: tuple[str, ...] | list[str] = WORDS) -> str:
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


def make_message(rng: random.Random, i: int, contacts: int, start: datetime, span_days: int, me: str) -> bytes:
    c = rng.randrange(contacts)
    other = f"Contact {c} <contact{c}@example{c % 50}.com>"
    sent = rng.random() < 0.4
    frm, to = (me, other) if sent else (other, me)
    date = start + timedelta(seconds=rng.randrange(span_days * 86400))
    subject = f"{'Re: ' if rng.random() < 0.5 else ''}Topic {rng.randrange(contacts * 3)}"
    body = "\n\n".join(_para(rng, rng.randint(8, 60)) for _ in range(rng.randint(1, 5)))
    if subject.startswith("Re:"):
        body += f"\n\nOn {format_datetime(date)} {other} wrote:\n" + "\n".join(
            "> " + _para(rng, 12) for _ in range(rng.randint(2, 10))
        )
    headers = [
        f"From: {frm}", f"To: {to}", f"Subject: {subject}", f"Date: {format_datetime(date)}",
        f"Message-ID: <bench{i}.{rng.randrange(10**9)}@example.com>", "MIME-Version: 1.0",
    ]
    if rng.random() < 0.15:
        html = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
        headers.append("Content-Type: text/html; charset=utf-8")
        body = f"<html><body>{html}</body></html>"
    else:
        headers.append("Content-Type: text/plain; charset=utf-8")
    if rng.random() < 0.05:
        headers.append("List-Unsubscribe: <mailto:unsubscribe@news.example.com>")
    return ("\n".join(headers) + "\n\n" + body + "\n").encode()


def write_mbox(path: Path, n: int, contacts: int = 2000, years: int = 5, seed: int = 7,
               me: str = "Pat Morgan <pat@example.com>") -> Path:
    rng = random.Random(seed)
    start = datetime(2021, 1, 1, tzinfo=UTC)
    with open(path, "wb") as fh:
        for i in range(n):
            raw = make_message(rng, i, contacts, start, years * 365, me)
            raw = b"\n".join(b">" + ln if ln.startswith(b"From ") else ln for ln in raw.split(b"\n"))
            fh.write(b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n" + raw + b"\n")
    return path


# --- threaded mailboxes for the end-to-end benchmark -----------------------------------------------------

# what each act looks like in the author's own text (../shared/LABELS.md); rates are per person-to-person message
ACT_SENTENCES = {
    "intro_request": ("Do you know anyone at {org} who works on treasury?",
                      "Could you introduce me to someone in their pricing group?",
                      "Can you put me in touch with {name}? I would value an introduction."),
    "handoff": ("I'd like you to meet {name}, who runs the desk at {org}; I have copied them here.",
                "Please contact {name}, they can help you with that.",
                "I'm forwarding {name}'s resume; they are looking for a trading role."),
    "thank_you": ("Thanks so much for your help with the contract yesterday.",
                  "I really appreciate you taking the time to meet last week.",
                  "Thank you for the referral, it led to a great conversation."),
    "reciprocal_ask": ("Let me know if I can help you in any way.",
                       "If I can ever be of help, call me.",
                       "Is there anything I can do for you in return?"),
}
ACT_RATES = {"intro_request": 0.05, "handoff": 0.03, "thank_you": 0.08, "reciprocal_ask": 0.02}
# filler with no act in it (WORDS has "thanks", "resume", "forward": the model would see acts everywhere)
FILLER = (  # noqa: SIM905 - readable as prose
    "the quarterly numbers look fine but we still need the signed schedule from their side before friday "
    "the pipeline capacity and the new contract terms are in the shared folder and the draft covers pricing "
    "delivery dates and the review meeting on tuesday with the finance team and the budget for next year"
).split()
DAY = 86400


class ThreadedMailbox:
    """A Zipf-weighted contact table (a few close contacts, a long tail) and threads of 1-8 messages with
    In-Reply-To/References, quoted replies, Cc, newsletters, HTML and attachments; acts at ACT_RATES.

    Messages carry X-Gmail-Labels (Sent / Inbox), as in a Google Takeout export, so the owner is inferred.
    """

    def __init__(self, contacts: int = 2000, seed: int = 7, me: str = "Pat Morgan <pat@example.com>",
                 attachment_rate: float = 0.04, bulk_rate: float = 0.10) -> None:
        self.rng = random.Random(seed)
        self.me = me
        self.contacts = [f"Contact {c} <contact{c}@org{c % max(contacts // 8, 1)}.example>" for c in range(contacts)]
        weights = [1 / (rank + 1) ** 0.9 for rank in range(contacts)]
        total = sum(weights)
        self.cum = list(itertools.accumulate(w / total for w in weights))
        self.attachment_rate = attachment_rate
        self.bulk_rate = bulk_rate
        self.serial = 0

    def _contact(self) -> str:
        return self.contacts[min(bisect.bisect(self.cum, self.rng.random()), len(self.contacts) - 1)]

    def _own_text(self, frm: str, to: str) -> str:
        rng = self.rng
        paras = [_para(rng, rng.randint(8, 60), FILLER) for _ in range(rng.randint(1, 4))]
        for act, rate in ACT_RATES.items():
            if rng.random() < rate:
                name = self.contacts[rng.randrange(len(self.contacts))].split(" <")[0]
                sentence = rng.choice(ACT_SENTENCES[act]).format(name=name, org=f"org{rng.randrange(300)}")
                paras.insert(rng.randrange(len(paras) + 1), sentence)
        return f"Hi {to.split(' <')[0]},\n\n" + "\n\n".join(paras) + f"\n\nBest,\n{frm.split(' <')[0]}"

    def _attachment(self) -> tuple[str, str]:
        size = min(int(self.rng.lognormvariate(math.log(50_000), 1.0)), 5_000_000)
        data = base64.encodebytes(self.rng.randbytes(size)).decode()
        return f"report-{self.serial}.pdf", data

    def message(self, frm: str, to: str, cc: list[str], subject: str, ts: int, own: str,
                parent: tuple[str, str, str, int, str] | None, bulk: bool = False) -> tuple[bytes, str]:
        """One RFC 5322 message; `parent` is (Message-ID, References, sender, date, own text) of the one it
        answers. Returns the bytes and this message's Message-ID."""
        rng = self.rng
        self.serial += 1
        mid = f"e2e{self.serial}.{rng.randrange(10**9)}@example.com"
        date = format_datetime(datetime.fromtimestamp(ts, UTC))
        body = own
        headers = [f"From: {frm}", f"To: {to}"]
        if cc:
            headers.append(f"Cc: {', '.join(cc)}")
        headers += [f"Subject: {subject}", f"Date: {date}", f"Message-ID: <{mid}>", "MIME-Version: 1.0"]
        if parent is not None:
            pmid, prefs, psender, pts, pown = parent
            refs = f"{prefs} <{pmid}>".strip()
            headers += [f"In-Reply-To: <{pmid}>", f"References: {refs}"]
            quoted = "\n".join("> " + ln if ln else ">" for ln in pown.splitlines())
            body += f"\n\nOn {format_datetime(datetime.fromtimestamp(pts, UTC))}, {psender} wrote:\n{quoted}"
        labels = "Sent" if frm == self.me else "Inbox,Category Updates" if bulk else "Inbox"
        headers.append(f"X-Gmail-Labels: {labels}")
        if bulk:
            headers += ["List-Unsubscribe: <mailto:unsubscribe@news.example.com>", "Precedence: bulk"]
        kind = rng.random()
        attach = self._attachment() if rng.random() < self.attachment_rate else None
        if kind < 0.10:  # HTML only
            html = "<html><body>" + "".join(f"<p>{p}</p>" for p in body.split("\n\n")) + "</body></html>"
            part = f"Content-Type: text/html; charset=utf-8\n\n{html}\n"
        elif kind < 0.25:  # text and HTML alternatives
            html = "<html><body>" + "".join(f"<p>{p}</p>" for p in body.split("\n\n")) + "</body></html>"
            alt = f"alt{self.serial}"
            part = (f'Content-Type: multipart/alternative; boundary="{alt}"\n\n--{alt}\n'
                    f"Content-Type: text/plain; charset=utf-8\n\n{body}\n--{alt}\n"
                    f"Content-Type: text/html; charset=utf-8\n\n{html}\n--{alt}--\n")
        else:
            part = f"Content-Type: text/plain; charset=utf-8\n\n{body}\n"
        if attach is None:
            text = "\n".join(headers) + "\n" + part
        else:
            name, data = attach
            mixed = f"mix{self.serial}"
            text = ("\n".join(headers) + f'\nContent-Type: multipart/mixed; boundary="{mixed}"\n\n--{mixed}\n' + part
                    + f'--{mixed}\nContent-Type: application/pdf; name="{name}"\nContent-Transfer-Encoding: base64\n'
                    f'Content-Disposition: attachment; filename="{name}"\n\n{data}--{mixed}--\n')
        return text.encode(), mid

    def thread(self, ts: int, end: int, parent: tuple[str, str, str, int, str] | None = None,
               contact: str | None = None, subject: str | None = None, length: int | None = None,
               ) -> Iterator[tuple[bytes, tuple[str, str, str, int, str], str, str]]:
        """Messages of one thread from `ts` (never after `end`): yields (bytes, parent tuple, contact, subject)."""
        rng = self.rng
        if parent is None and rng.random() < self.bulk_rate:
            sender = f"News {rng.randrange(40)} <news{rng.randrange(40)}@lists.example>"
            own = _para(rng, rng.randint(40, 200), FILLER)
            raw, mid = self.message(sender, self.me, [], f"Weekly digest {rng.randrange(10**6)}", ts, own, None,
                                    bulk=True)
            yield raw, (mid, "", sender, ts, own), sender, ""
            return
        contact = contact or self._contact()
        subject = subject or f"Topic {rng.randrange(10**7)}"
        cc = [self._contact() for _ in range(rng.randint(1, 3))] if rng.random() < 0.15 else []
        cc = [c for c in cc if c != contact]
        mine = rng.random() < 0.45
        length = length or min(1 + int(rng.expovariate(1 / 1.6)), 8)
        refs = ""
        for _ in range(length):
            if ts > end:
                return
            frm, to = (self.me, contact) if mine else (contact, self.me)
            own = self._own_text(frm, to)
            subj = subject if parent is None else "Re: " + subject.removeprefix("Re: ")
            raw, mid = self.message(frm, to, cc, subj, ts, own, parent)
            if parent is not None:
                refs = f"{parent[1]} <{parent[0]}>".strip()
            parent = (mid, refs, frm, ts, own)
            yield raw, parent, contact, subject
            ts += int(rng.expovariate(1 / (30 * 3600))) + 120
            mine = not mine if rng.random() < 0.85 else mine


def _mbox_line(raw: bytes) -> bytes:
    raw = b"\n".join(b">" + ln if ln.startswith(b"From ") else ln for ln in raw.split(b"\n"))
    return b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n" + raw.rstrip(b"\n") + b"\n\n"


Tail = tuple[tuple[str, str, str, int, str], str, str]  # (parent tuple, contact, subject) of a thread's last message


def write_threaded_mbox(path: Path, n: int, box: ThreadedMailbox, start: datetime, days: int,
                        open_tails: list[Tail] | None = None, reply_share: float = 0.0,
                        keep_tails_days: int = 30) -> list[Tail]:
    """Write `n` messages over `days` from `start`. With `open_tails`, `reply_share` of the threads continue
    those (replies into threads already stored). Returns the last message of every thread that ended in
    the final `keep_tails_days` days (bounded: memory does not grow with `n`)."""
    rng = box.rng
    t0 = int(start.timestamp())
    end = t0 + days * DAY
    tails: list[Tail] = []
    written = 0
    with open(path, "wb") as fh:
        while written < n:
            ts = t0 + rng.randrange(days * DAY)
            if open_tails and rng.random() < reply_share:
                parent, contact, subject = open_tails[rng.randrange(len(open_tails))]
                ts = max(ts, parent[3] + 600)
                it = box.thread(ts, end, parent, contact, subject, length=rng.randint(1, 3))
            else:
                it = box.thread(ts, end)
            last = None
            for raw, parent, contact, subject in it:
                fh.write(_mbox_line(raw))
                written += 1
                last = (parent, contact, subject)
                if written >= n:
                    break
            if last is not None and subject and last[0][3] >= end - keep_tails_days * DAY:
                tails.append(last)
    return tails
