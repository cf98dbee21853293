"""Scenario mailboxes for the relationship tests: write mail relative to a report date, import it for real,
label its acts, audit it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from mailaudit.config import Config, IdentityConfig, RelationsConfig
from mailaudit.frames import load_frames
from mailaudit.ingest import import_paths
from mailaudit.relations import Relations, build_relations
from mailaudit.store import find_message, open_store, save_labels

from mailgen import msg, write_mbox

ME = "Pat Morgan <pat@example.com>"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def ago(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    """An instant before the report date."""
    return AS_OF - timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


class Box:
    """A mailbox being written: each message gets a Message-ID <mN@test> and the acts it carries."""

    def __init__(self, me: str = ME) -> None:
        self.me = me
        self.raws: list[bytes] = []
        self.acts: dict[str, list[str]] = {}
        self.subjects: dict[str, str] = {}
        self.refs: dict[str, list[str]] = {}

    def mail(
        self,
        frm: str,
        to: str | Iterable[str],
        when: datetime | str,
        acts: Iterable[str] = (),
        cc: Iterable[str] = (),
        reply_to: str | None = None,
        subject: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> str:
        """Add a message; `when` is a datetime (written in UTC) or a raw Date header. Returns its Message-ID."""
        mid = f"<m{len(self.raws)}@test>"
        headers = dict(extra or {})
        if reply_to:
            chain = [*self.refs[reply_to], reply_to]
            headers["In-Reply-To"] = reply_to
            headers["References"] = " ".join(chain)
            self.refs[mid] = chain
            subject = subject or "Re: " + self.subjects[reply_to].removeprefix("Re: ")
        else:
            self.refs[mid] = []
            subject = subject or f"Subject {len(self.raws)}"
        self.subjects[mid] = subject
        if cc := list(cc):
            headers["Cc"] = ", ".join(cc)
        date = when if isinstance(when, str) else format_datetime(when.astimezone(UTC))
        to = [to] if isinstance(to, str) else list(to)
        body = f"Message {len(self.raws)} of the scenario, with words of its own.\n"
        self.raws.append(
            msg(frm=frm, to=", ".join(to), subject=subject, body=body, date=date, message_id=mid, extra=headers)
        )
        self.acts[mid] = list(acts)
        return mid

    def send(self, to: str | Iterable[str], when: datetime | str, acts: Iterable[str] = (), **kw: object) -> str:
        """A message from the owner."""
        return self.mail(self.me, to, when, acts, **kw)  # type: ignore[arg-type]

    def receive(self, frm: str, when: datetime | str, acts: Iterable[str] = (), **kw: object) -> str:
        """A message to the owner."""
        return self.mail(frm, self.me, when, acts, **kw)  # type: ignore[arg-type]

    def store(self, tmp_path: Path, cfg: Config | None = None, label: bool = True) -> sqlite3.Connection:
        """Import the mailbox into a fresh store and (unless label=False) label every message with its acts."""
        cfg = cfg or config()
        path = write_mbox(tmp_path / "box.mbox", self.raws)
        conn = open_store(tmp_path / "box.db")
        import_paths(conn, [str(path)], cfg)
        if not label:
            return conn
        labels = {}
        for mid, acts in self.acts.items():
            pk = find_message(conn, mid)
            assert pk is not None, mid
            labels[pk] = acts
        save_labels(conn, labels, "test")
        return conn

    def audit(self, tmp_path: Path, cfg: Config | None = None, as_of: datetime = AS_OF) -> Relations:
        cfg = cfg or config()
        conn = self.store(tmp_path, cfg)
        try:
            return audit(conn, cfg, as_of)
        finally:
            conn.close()


def audit(conn: sqlite3.Connection, cfg: Config | None = None, as_of: datetime = AS_OF) -> Relations:
    cfg = cfg or config()
    frames = load_frames(conn, cfg.identity.addresses)
    return build_relations(frames, cfg.relations, as_of, cfg.identity.merge)


def config(merge: tuple[tuple[str, ...], ...] = (), **relations: object) -> Config:
    return Config(
        identity=IdentityConfig(addresses=("pat@example.com",), merge=merge),
        relations=RelationsConfig(**relations),  # type: ignore[arg-type]
    )


def flags(rel: Relations, contact: str) -> set[tuple[str, str]]:
    f = rel.flags[rel.flags["contact"] == contact]
    return set(zip(f["flag"], f["by"], strict=True))


def flag(rel: Relations, contact: str, name: str, by: str) -> dict:
    f = rel.flags[(rel.flags["contact"] == contact) & (rel.flags["flag"] == name) & (rel.flags["by"] == by)]
    assert len(f) == 1, (contact, name, by, rel.flags)
    return f.iloc[0].to_dict()


def status(rel: Relations, contact: str) -> str:
    row = rel.contacts[rel.contacts["contact"] == contact]
    assert len(row) == 1, (contact, list(rel.contacts["contact"]))
    return str(row["status"].iat[0])


def metrics(rel: Relations, contact: str) -> dict:
    row = rel.contacts[rel.contacts["contact"] == contact]
    assert len(row) == 1, (contact, list(rel.contacts["contact"]))
    return row.iloc[0].to_dict()
