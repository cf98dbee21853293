"""Forgetting a contact: delete their mail and report data, and keep a tombstone so it never returns."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from mailaudit.store import _now_iso, rollback


def load_tombstones(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT addr FROM tombstones")}


@dataclass
class Forgotten:
    messages: int
    reports: int


def forget_contact(conn: sqlite3.Connection, addr: str) -> Forgotten:
    """Delete every message from or to `addr` (acts, labels, locations go with them), the contact's name and
    its entries in stored report runs, and leave a tombstone so no later import or sync brings them back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM messages WHERE from_addr=? UNION SELECT message FROM recipients WHERE addr=?",
            (addr, addr),
        )]
        conn.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in ids])
        conn.execute("DELETE FROM names WHERE addr=?", (addr,))
        reports = _forget_in_reports(conn, addr)
        conn.execute("INSERT OR REPLACE INTO tombstones VALUES (?,?)", (addr, _now_iso()))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return Forgotten(len(ids), reports)


def _forget_in_reports(conn: sqlite3.Connection, addr: str) -> int:
    """Drop the contact from each stored report run (kept as JSON text), whatever its exact shape."""
    changed = 0
    for run_id, contacts in conn.execute("SELECT id, contacts FROM report_runs").fetchall():
        if addr not in contacts:
            continue
        data = json.loads(contacts)
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != addr}
        elif isinstance(data, list):
            data = [c for c in data if not (isinstance(c, dict) and c.get("contact") == addr) and c != addr]
        conn.execute("UPDATE report_runs SET contacts=? WHERE id=?", (json.dumps(data), run_id))
        changed += 1
    return changed


def undo_forget(conn: sqlite3.Connection, addr: str) -> bool:
    """Remove the tombstone; the contact's mail comes back with the next import or full re-sync."""
    cur = conn.execute("DELETE FROM tombstones WHERE addr=?", (addr,))
    if cur.rowcount:
        # their mail sits in files already read: have the next import read every export again (dedup holds)
        conn.execute("UPDATE sources SET complete=0, done_offset=0 WHERE kind != 'imap'")
    return cur.rowcount > 0
