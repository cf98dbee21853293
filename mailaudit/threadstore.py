"""Store reads and writes for threading, streamed in id or subject order: no call holds every message."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator
from itertools import islice

from mailaudit.store import rollback
from mailaudit.threads import HeaderRow, SubjectRow, ThreadInput, ThreadKey

_KEY_COLUMNS = "id, message_id, in_reply_to, refs, norm_subject, date_ts IS NOT NULL, gm_thrid, thread_id"
_CHUNK = 500  # ids per `IN (?, ...)`


def _fill(conn: sqlite3.Connection, table: str, ids: Iterable[int]) -> None:
    """Put `ids` in a temp table, in one transaction (the temp database only: the store stays unlocked)."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY)")
    conn.execute("BEGIN")
    try:
        conn.execute(f"DELETE FROM temp.{table}")
        conn.executemany(f"INSERT OR IGNORE INTO temp.{table} VALUES (?)", ((i,) for i in ids))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _scope(conn: sqlite3.Connection, ids: Iterable[int] | None) -> str:
    """A WHERE condition for these message ids (None: every message)."""
    if ids is None:
        return "1"
    _fill(conn, "_thread_ids", ids)
    return "id IN (SELECT id FROM temp._thread_ids)"


def iter_thread_headers(conn: sqlite3.Connection, ids: Iterable[int] | None = None) -> Iterator[HeaderRow]:
    """Threader pass 1: what links every message (or `ids`) to others, in id order."""
    where = _scope(conn, ids)
    for mid, message_id, in_reply_to, refs, gm_thrid, date_ts, is_reply in conn.execute(
        "SELECT id, message_id, in_reply_to, refs, gm_thrid, date_ts, is_reply FROM messages"
        f" WHERE {where} ORDER BY id"
    ):
        yield mid, message_id, in_reply_to, refs.split(), gm_thrid, date_ts, bool(is_reply)


def iter_subject_rows(
    conn: sqlite3.Connection, replies: Iterable[int], ids: Iterable[int] | None = None
) -> Iterator[SubjectRow]:
    """Threader pass 2: the dated messages (of `ids`) whose subject one of `replies` has, by subject and date."""
    where = _scope(conn, ids)
    _fill(conn, "_thread_replies", replies)
    yield from conn.execute(
        "SELECT id, norm_subject, date_ts, own_fp, quote_fp, from_addr FROM messages"
        " WHERE norm_subject IN (SELECT m.norm_subject FROM temp._thread_replies r JOIN messages m ON m.id=r.id)"
        f" AND norm_subject != '' AND date_ts IS NOT NULL AND {where} ORDER BY norm_subject, date_ts, id"
    )


def load_recipients(conn: sqlite3.Connection, ids: list[int]) -> dict[int, set[str]]:
    """The To and Cc addresses of these messages (those with none are left out)."""
    out: dict[int, set[str]] = {}
    for at in range(0, len(ids), _CHUNK):
        chunk = ids[at:at + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for mid, addr in conn.execute(f"SELECT message, addr FROM recipients WHERE message IN ({marks})", chunk):
            out.setdefault(mid, set()).add(addr)
    return out


def load_thread_inputs(conn: sqlite3.Connection, ids: Collection[int] | None = None) -> list[ThreadInput]:
    """Threading inputs of every message, or only of `ids`, as objects in id order: for tests (build_threads)."""
    where = _scope(conn, ids)
    rows = conn.execute(
        "SELECT id, message_id, in_reply_to, refs, norm_subject, date_ts, gm_thrid, is_reply, own_fp, quote_fp,"
        f" from_addr FROM messages WHERE {where} ORDER BY id"
    ).fetchall()
    people = load_recipients(conn, [r[0] for r in rows])
    return [ThreadInput(
        id=r[0], message_id=r[1], in_reply_to=r[2], references=r[3].split() if r[3] else [], norm_subject=r[4],
        date_ts=r[5], gm_thrid=r[6], is_reply=bool(r[7]), own_fp=r[8], quote_fp=r[9], from_addr=r[10],
        recipients=frozenset(people.get(r[0], ())),
    ) for r in rows]


def load_message_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(stored messages, of which not threaded yet); the second from the thread_id index."""
    total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    return total, conn.execute("SELECT count(*) FROM messages WHERE thread_id IS NULL").fetchone()[0]


def iter_thread_keys(conn: sqlite3.Connection) -> Iterator[ThreadKey]:
    """What ties messages together in threads, without their text (threads.ThreadKey), of every message."""
    return conn.execute(f"SELECT {_KEY_COLUMNS} FROM messages")


def load_unthreaded_keys(conn: sqlite3.Connection) -> list[ThreadKey]:
    return conn.execute(f"SELECT {_KEY_COLUMNS} FROM messages WHERE thread_id IS NULL").fetchall()


def threads_stale(conn: sqlite3.Connection) -> bool:
    """Messages were deleted since the threads were saved (`forget`): their threads must all be redone."""
    return bool(conn.execute(
        "SELECT (SELECT total(n_messages) FROM threads) != (SELECT count(*) FROM messages WHERE thread_id IS NOT NULL)"
    ).fetchone()[0])


_THREAD_ROWS_SQL = (
    "INSERT INTO threads(id, root, subject, gm_thrid, first_ts, last_ts, n_messages) "
    "SELECT m.thread_id, m.thread_id, r.subject, max(m.gm_thrid), min(m.date_ts), max(m.date_ts), count(*) "
    "FROM messages m JOIN messages r ON r.id=m.thread_id {where} GROUP BY m.thread_id"
)
# the threads that messages left or joined
_TOUCHED_SQL = "SELECT root FROM temp._roots UNION SELECT old FROM temp._roots WHERE old IS NOT NULL"


def save_threads(conn: sqlite3.Connection, roots: Iterable[tuple[int, int]]) -> int:
    """Write (message id, thread root) pairs for all messages or some (the others keep their thread)
    and bring the threads table up to date; returns the thread count.

    Only the messages whose thread changed are written and only the threads they left or joined are rebuilt,
    so a weekly import touches a few rows, not the whole store.
    """
    total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _roots (id INTEGER PRIMARY KEY, root INTEGER, old INTEGER)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM temp._roots")
        conn.executemany("INSERT INTO temp._roots VALUES (?,?,?)", _changes(conn, roots))
        conn.execute("UPDATE messages SET thread_id=r.root FROM temp._roots r WHERE r.id=messages.id")
        touched = conn.execute(f"SELECT count(*) FROM ({_TOUCHED_SQL})").fetchone()[0]
        if touched * 4 > total:  # most of the store (a first import): rebuild it whole
            _rebuild_all(conn)
        else:
            conn.execute(f"DELETE FROM threads WHERE id IN ({_TOUCHED_SQL})")
            conn.execute(_THREAD_ROWS_SQL.format(where=f"WHERE m.thread_id IN ({_TOUCHED_SQL})"))
            stale = conn.execute(  # messages were deleted (forget) from threads no message left or joined
                "SELECT (SELECT total(n_messages) FROM threads) != (SELECT count(*) FROM messages)"
            ).fetchone()[0]
            if stale:
                _rebuild_all(conn)
        conn.execute("DELETE FROM temp._roots")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return conn.execute("SELECT count(*) FROM threads").fetchone()[0]


def _rebuild_all(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM threads")
    conn.execute(_THREAD_ROWS_SQL.format(where=""))


def _changes(conn: sqlite3.Connection, roots: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int, int | None]]:
    """(id, new root, old thread) of each message whose thread changes, looked up a chunk of ids at a time: a few
    new messages read a few rows, not the whole table."""
    pairs = iter(roots)
    while chunk := list(islice(pairs, _CHUNK)):
        marks = ",".join("?" * len(chunk))
        old = dict(conn.execute(f"SELECT id, thread_id FROM messages WHERE id IN ({marks})", [m for m, _ in chunk]))
        for mid, root in chunk:
            if old.get(mid, root) != root:
                yield mid, root, old[mid]
