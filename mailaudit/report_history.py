"""The store reads and writes behind the HTML report: evidence messages by Message-ID, counts of what the audit
left out, and each report run's statuses, so that the next report can say what changed."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

_CHUNK = 500  # Message-IDs per query, well under SQLite's variable limit
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EvidenceMessage:
    """One message a flag rests on, as the report shows it."""

    message_id: str  # with angle brackets, as in Relations.flags
    ts: int
    subject: str
    from_addr: str  # normalised
    from_name: str
    thread: int
    gm_thrid: str | None  # Gmail's X-GM-THRID, a decimal string
    acts: tuple[str, ...]  # the user's label where there is one, else the model's
    excerpt: str  # the start of the author's own text, whitespace collapsed


@dataclass(frozen=True)
class StoreCounts:
    """What the store holds up to the report date, and what the audit left out of it."""

    messages: int = 0
    bulk: int = 0  # bulk or automated: never a relationship
    defects: int = 0  # stored with parse defects (still counted when they have a Date)
    undated: int = 0  # no usable Date header: left out of every window
    labelled: int = 0  # acts from the user's labels
    predicted: int = 0  # acts from the model (no label)
    unclassified: int = 0  # person-to-person mail with neither: counted as carrying no act


@dataclass(frozen=True)
class ReportRun:
    """A stored report: its date and each contact's status and flags ('flag:by;...') then."""

    as_of: str  # YYYY-MM-DD
    created_at: str
    statuses: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)


def load_evidence(
    conn: sqlite3.Connection, message_ids: Iterable[str], excerpt_chars: int = 240
) -> dict[str, EvidenceMessage]:
    """The stored messages with these Message-IDs (angle brackets optional), keyed as given; unknown ones are
    left out. Acts are the user's label where there is one, else the model's."""
    wanted: dict[str, str] = {}
    for mid in message_ids:
        wanted.setdefault(mid.strip().strip("<>").strip(), mid)
    keys = [k for k in wanted if k]
    out: dict[str, EvidenceMessage] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = conn.execute(
            "SELECT m.message_id, m.date_ts, m.subject, m.from_addr, m.from_name, coalesce(m.thread_id, -m.id),"
            " m.gm_thrid, coalesce(l.acts, p.acts, ''), substr(t.own_text, 1, ?)"
            " FROM messages m LEFT JOIN labels l ON l.message = m.id LEFT JOIN predictions p ON p.message = m.id"
            " LEFT JOIN texts t ON t.message = m.id"
            f" WHERE m.message_id IN ({','.join('?' * len(chunk))}) ORDER BY m.id",
            [excerpt_chars * 2 + 20, *chunk],
        )
        for mid, ts, subject, addr, name, thread, thrid, acts, text in rows:
            key = wanted[mid]
            if key in out:
                continue  # two stored copies under one Message-ID: the first one speaks for both
            out[key] = EvidenceMessage(
                message_id=key, ts=int(ts or 0), subject=subject or "", from_addr=addr or "", from_name=name or "",
                thread=int(thread), gm_thrid=thrid or None, acts=tuple(a for a in (acts or "").split(";") if a),
                excerpt=excerpt(text or "", excerpt_chars),
            )
    return out


def excerpt(text: str, limit: int) -> str:
    """The first `limit` characters of `text` with whitespace collapsed, cut at a word with '…' when longer."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def load_store_counts(conn: sqlite3.Connection, as_of_ts: int) -> StoreCounts:
    """Counts for "How this was computed": messages up to the report date, bulk, defects, undated, and where
    the acts of person-to-person mail came from."""
    before = "(date_ts IS NULL OR date_ts < :t)"
    row = conn.execute(
        f"SELECT count(*), sum(bulk != ''), sum(defects != ''), sum(date_ts IS NULL) FROM messages WHERE {before}",
        {"t": as_of_ts},
    ).fetchone()
    acts = conn.execute(
        "SELECT sum(l.message IS NOT NULL), sum(l.message IS NULL AND p.message IS NOT NULL),"
        " sum(l.message IS NULL AND p.message IS NULL)"
        " FROM messages m LEFT JOIN labels l ON l.message = m.id LEFT JOIN predictions p ON p.message = m.id"
        " WHERE m.bulk = '' AND m.date_ts IS NOT NULL AND m.date_ts < :t",
        {"t": as_of_ts},
    ).fetchone()
    n = [int(v or 0) for v in (*row, *acts)]
    return StoreCounts(*n)


def save_report_run(conn: sqlite3.Connection, as_of: str, statuses: dict[str, str], flags: dict[str, str]) -> None:
    """Store one report's statuses and flags per contact; a report of the same date replaces the earlier one."""
    contacts = {c: [s, flags.get(c, "")] for c, s in statuses.items()}
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM report_runs WHERE as_of = ?", (as_of,))
        conn.execute(
            "INSERT INTO report_runs(as_of, created_at, contacts) VALUES (?, ?, ?)",
            (as_of, created, json.dumps(contacts, separators=(",", ":"), sort_keys=True)),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def load_previous_run(conn: sqlite3.Connection, as_of: str) -> ReportRun | None:
    """The latest stored report dated before `as_of` (YYYY-MM-DD), or None; an unreadable record counts as none."""
    row = conn.execute(
        "SELECT as_of, created_at, contacts FROM report_runs WHERE as_of < ? ORDER BY as_of DESC, id DESC LIMIT 1",
        (as_of,),
    ).fetchone()
    if row is None:
        return None
    try:
        contacts = json.loads(row[2])
    except ValueError:
        return None
    if not isinstance(contacts, dict):
        return None
    statuses: dict[str, str] = {}
    flags: dict[str, str] = {}
    for contact, value in contacts.items():
        if isinstance(value, list) and value and isinstance(value[0], str):
            statuses[contact] = value[0]
            flags[contact] = str(value[1]) if len(value) > 1 else ""
    return ReportRun(as_of=row[0], created_at=row[1], statuses=statuses, flags=flags)
