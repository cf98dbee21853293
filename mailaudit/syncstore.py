"""The store's side of IMAP sync: folder cursors, a fetched batch with its cursor in one transaction, re-links."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from mailaudit.store import BatchResult, _now_iso, _save_one, involves, rollback

if TYPE_CHECKING:  # parse pulls in the email package and html2text: a no-change sync never needs them
    from mailaudit.parse import ParsedMessage


@dataclass(frozen=True)
class ImapCursor:
    uidvalidity: int | None
    last_uid: int


# (UID as the location, parsed message or None when unreadable, from a sent folder, Gmail's X-GM-MSGID),
# optionally followed by the content hash when a sync worker computed it
ImapItem: TypeAlias = (
    "tuple[str, ParsedMessage | None, bool, str | None] | tuple[str, ParsedMessage | None, bool, str | None, str]"
)


def load_imap_cursor(conn: sqlite3.Connection, account: str, folder: str) -> ImapCursor | None:
    row = conn.execute(
        "SELECT uidvalidity, last_uid FROM imap_folders WHERE account=? AND folder=?", (account, folder)
    ).fetchone()
    return ImapCursor(row[0], int(row[1])) if row else None


def _save_imap_cursor(
    conn: sqlite3.Connection, source_id: int, account: str, folder: str, uidvalidity: int, last_uid: int
) -> None:
    # within one UIDVALIDITY the cursor only moves forward; a new UIDVALIDITY starts it afresh
    conn.execute(
        "INSERT INTO imap_folders(account, folder, source, uidvalidity, last_uid, synced_at) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT(account, folder) DO UPDATE SET source=excluded.source, synced_at=excluded.synced_at, "
        "last_uid=CASE WHEN uidvalidity IS excluded.uidvalidity THEN max(last_uid, excluded.last_uid) "
        "ELSE excluded.last_uid END, uidvalidity=excluded.uidvalidity",
        (account, folder, source_id, uidvalidity, last_uid, _now_iso()),
    )


def save_imap_cursor(
    conn: sqlite3.Connection, source_id: int, account: str, folder: str, uidvalidity: int, last_uid: int
) -> None:
    """Advance the cursor with no batch to store (the folder's new UIDs were all expunged, or filtered)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _save_imap_cursor(conn, source_id, account, folder, uidvalidity, last_uid)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def save_imap_batch(
    conn: sqlite3.Connection, source_id: int, account: str, folder: str, uidvalidity: int,
    items: Iterable[ImapItem], last_uid: int,
) -> BatchResult:
    """Store a batch of fetched messages AND advance the folder's cursor to `last_uid`, in ONE transaction:
    a crash keeps both or neither, so the next run fetches exactly what is missing. Mail from or to a
    forgotten (tombstoned) contact is skipped, as on import."""
    result = BatchResult()
    forgotten = {r[0] for r in conn.execute("SELECT addr FROM tombstones")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for location, pm, sent_hint, gm_msgid, *chash in items:
            if pm is None or (forgotten and involves(pm, forgotten)):
                result.skipped += 1
                continue
            _save_one(conn, source_id, location, pm, sent_hint, result, *chash)
            if gm_msgid or pm.gm_thrid or pm.gm_labels:
                # a copy already stored (e.g. from a Takeout import) gains the ids it lacked; one that gains a
                # Gmail thread id is threaded again by the next settle
                conn.execute(
                    "UPDATE messages SET gm_msgid=coalesce(gm_msgid, ?), gm_thrid=coalesce(gm_thrid, ?), "
                    "thread_id=CASE WHEN gm_thrid IS NULL AND ? IS NOT NULL THEN NULL ELSE thread_id END, "
                    "labels=CASE WHEN labels='' THEN ? ELSE labels END "
                    "WHERE id=(SELECT message FROM locations WHERE source=? AND location=?)",
                    (gm_msgid, pm.gm_thrid, pm.gm_thrid, "\n".join(pm.gm_labels), source_id, location),
                )
        _save_imap_cursor(conn, source_id, account, folder, uidvalidity, last_uid)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return result


def save_imap_relink(
    conn: sqlite3.Connection, source_id: int, account: str, folder: str, uidvalidity: int,
    entries: list[tuple[str, ParsedMessage, int]], sent_hint: bool, uidnext: int,
) -> list[str]:
    """A folder's UIDVALIDITY changed: forget its old UIDs and link each listed UID (parsed headers, size) to
    the stored message it is, by Message-ID or else by content key, without its body. Returns the UIDs that
    matched nothing: those are new and must be fetched. The cursor stops just below the first of them."""
    unknown: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM locations WHERE source=?", (source_id,))
        for location, pm, size in entries:
            mid = _match_known(conn, pm, size)
            if mid is None:
                unknown.append(location)
                continue
            conn.execute("INSERT OR REPLACE INTO locations VALUES (?,?,?)", (source_id, location, mid))
            if sent_hint:
                conn.execute("UPDATE messages SET sent_hint=1 WHERE id=? AND sent_hint=0", (mid,))
        last_uid = min(int(u) for u in unknown) - 1 if unknown else uidnext - 1
        conn.execute("DELETE FROM imap_folders WHERE account=? AND folder=?", (account, folder))
        _save_imap_cursor(conn, source_id, account, folder, uidvalidity, last_uid)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return unknown


def _match_known(conn: sqlite3.Connection, pm: ParsedMessage, size: int) -> int | None:
    if pm.message_id:
        row = conn.execute(
            "SELECT m.id FROM message_ids i JOIN messages m ON m.id=i.message "
            "WHERE i.msgid=? AND m.from_addr=? AND m.date_ts IS ?",
            (pm.message_id, pm.from_addr, pm.date_ts),
        ).fetchone()
        if row:
            return int(row[0])
    # no (trustworthy) Message-ID: sender, date, subject and exact size together
    row = conn.execute(
        "SELECT id FROM messages WHERE from_addr=? AND date_ts IS ? AND norm_subject=? AND size=? LIMIT 1",
        (pm.from_addr, pm.date_ts, pm.norm_subject, size),
    ).fetchone()
    return int(row[0]) if row else None


def load_known_uids(conn: sqlite3.Connection, source_id: int) -> set[int]:
    return {int(r[0]) for r in conn.execute("SELECT location FROM locations WHERE source=?", (source_id,))}
