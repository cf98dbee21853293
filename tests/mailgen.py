"""Build small RFC 5322 messages and mailboxes for tests, at test time."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path


def msg(
    frm: str = "Ann Lee <ann@example.com>",
    to: str = "Pat Morgan <pat@example.com>",
    subject: str = "Hello",
    body: str = "Hi Pat,\n\nHow are you?\n\nAnn\n",
    date: str | None = "Mon, 04 May 2026 10:00:00 +0000",
    message_id: str | None = "<m1@example.com>",
    extra: dict[str, str] | None = None,
    content_type: str = "text/plain; charset=utf-8",
    cte: str | None = None,
    raw_body: bytes | None = None,
) -> bytes:
    lines = [f"From: {frm}", f"To: {to}", f"Subject: {subject}"]
    if date is not None:
        lines.append(f"Date: {date}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    lines += ["MIME-Version: 1.0", f"Content-Type: {content_type}"]
    if cte:
        lines.append(f"Content-Transfer-Encoding: {cte}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return head + (raw_body if raw_body is not None else body.replace("\n", "\r\n").encode("utf-8"))


def rfc_date(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> str:
    return format_datetime(datetime(year, month, day, hour, minute, tzinfo=UTC))


def write_mbox(path: Path, messages: list[bytes], gz: bool = False) -> Path:
    chunks = []
    for raw in messages:
        body = raw.replace(b"\r\n", b"\n")
        body = b"\n".join((b">" + ln if ln.startswith(b"From ") else ln) for ln in body.split(b"\n"))
        chunks.append(b"From MAILER-DAEMON Mon May  4 10:00:00 2026\n" + body.rstrip(b"\n") + b"\n\n")
    data = b"".join(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def write_maildir(path: Path, messages: list[bytes], sub: str = "cur") -> Path:
    for d in ("cur", "new", "tmp"):
        (path / d).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        name = f"1700000000.{i}.host:2,S" if sub == "cur" else f"1700000000.{i}.host"
        (path / sub / name).write_bytes(raw)
    return path


def write_emls(path: Path, messages: list[bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        (path / f"message-{i:03d}.eml").write_bytes(raw)
    return path
