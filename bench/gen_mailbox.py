"""Generate a large synthetic mbox for benchmarks: realistic sizes, replies with quotes, some HTML."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

WORDS = (  # noqa: SIM905 - readable as prose
    "the deal numbers look fine but we still need the signed confirmation from their side before friday "
    "please call me when you get a chance thanks for the update about the pipeline capacity and the new "
    "contract terms I will forward the resume to our team lead and let you know what she says about it"
).split()


def _para(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


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
