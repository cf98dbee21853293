"""The SQLite store: open (pragmas, migrations, refusal of foreign files), save_* and load_* calls."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailaudit.errors import StoreError
from mailaudit.migrations import MIGRATIONS

if TYPE_CHECKING:  # parse pulls in the email package and html2text: a no-change sync never needs them
    from mailaudit.parse import ParsedMessage

APPLICATION_ID = 0x4D415544  # "MAUD": marks a file as a mailaudit store
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class SourceState:
    id: int
    done_offset: int
    complete: bool
    unchanged: bool


@dataclass
class BatchResult:
    new: int = 0
    duplicates: int = 0
    skipped: int = 0
    defects: int = 0


def rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it rolls back by itself on a full disk)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


WAL_AUTOCHECKPOINT = 16384  # pages: checkpoint every 64 MB of WAL
WAL_RESTART_BYTES = 256 << 20  # a streaming writer's WAL is made to start over beyond this


@contextmanager
def background_checkpoints(
    conn: sqlite3.Connection, every_s: float = 0.5, restart_bytes: int = WAL_RESTART_BYTES
) -> Iterator[None]:
    """While one writer streams batches in (a first sync, a big import), a thread on its own connection
    checkpoints the WAL instead of the writer's COMMIT: the checkpoint's fsyncs then overlap the next fetch
    (1.9 s of a 20,000-message first sync). Durability is unchanged: a checkpoint only copies committed frames.

    The thread's PASSIVE checkpoints alone never let the WAL start over while the writer keeps writing: the
    log only wraps when a transaction begins with every frame copied back, and the writer's next batch always
    began first (the WAL grew to everything written, 6 GB into a 1,000,000-message import). So the writer
    still checkpoints itself once the WAL passes `restart_bytes`; the thread has copied most frames by then,
    leaving the writer the last few and one sync, and its next batch starts the log over.
    """
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    if not path:  # an in-memory store has no WAL
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        side = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not stop.wait(every_s):
                side.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the WAL just grows until the writer checkpoints it again below
        finally:
            side.close()

    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute(f"PRAGMA wal_autocheckpoint={max(1, restart_bytes // page)}")
    thread = threading.Thread(target=loop, name="wal-checkpoint", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")


def open_store(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if new) and migrate the store; a foreign or corrupt file is refused, never touched."""
    path = Path(path)
    _check_foreign(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        _refuse_foreign_schema(conn, path)  # before any pragma writes to the file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        # Bulk writes: a 64 MB page cache keeps the indexes in memory, and checkpointing every 64 MB of WAL
        # instead of every 4 MB (each checkpoint syncs the file) took an import of 100,000 messages 35 -> 25 s.
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        conn.execute("PRAGMA journal_size_limit=67108864")  # and the WAL file shrinks back after one
        _migrate(conn, path)
    except StoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable mailaudit store ({exc}); move it aside or pass --db") from None
    return conn


def _check_foreign(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as fh:
        head = fh.read(100)
    if not head.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path}: exists and is not a SQLite database; refusing to overwrite it (pass --db)")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{path}: is another program's database; refusing to touch it (pass --db)")


def _refuse_foreign_schema(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if tables:
            raise StoreError(f"{path}: is a SQLite database of another program; refusing to touch it (pass --db)")
    if version > len(MIGRATIONS):
        raise StoreError(f"{path}: was written by a newer mailaudit (schema {version}); upgrade mailaudit")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if 0 < version < len(MIGRATIONS):
        backup = path.with_name(f"{path.name}.bak-v{version}")
        dest = sqlite3.connect(backup)
        conn.backup(dest)
        dest.close()
        os.chmod(backup, 0o600)
    for number, (_name, sql) in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise


def save_source(
    conn: sqlite3.Connection, key: str, kind: str, path: str, folder: str, sent_folder: bool,
    size: int | None, mtime: float | None,
) -> SourceState:
    """Register a source (idempotent) and say where a re-import should resume."""
    row = conn.execute(
        "SELECT id, size, mtime, done_offset, complete FROM sources WHERE key=?", (key,)
    ).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO sources(key, kind, path, folder, sent_folder, size, mtime) VALUES (?,?,?,?,?,?,?)",
            (key, kind, path, folder, int(sent_folder), size, mtime),
        )
        return SourceState(int(cur.lastrowid or 0), 0, False, False)
    sid, old_size, old_mtime, done, complete = row
    unchanged = old_size == size and old_mtime == mtime
    if not unchanged:
        # an mbox that only grew resumes at the cursor; one rewritten in place is read again (dedup holds)
        grew = kind == "mbox" and old_size is not None and size is not None and size >= old_size
        done = done if grew else 0
        conn.execute(
            "UPDATE sources SET size=?, mtime=?, done_offset=?, complete=0 WHERE id=?", (size, mtime, done, sid)
        )
        complete = 0
    return SourceState(sid, int(done), bool(complete), unchanged)


def mark_source_complete(conn: sqlite3.Connection, source_id: int) -> None:
    conn.execute(
        "UPDATE sources SET complete=1, imported_at=?, "
        "messages=(SELECT count(*) FROM locations WHERE source=?) WHERE id=?",
        (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), source_id, source_id),
    )


def load_known_locations(conn: sqlite3.Connection, source_id: int) -> set[str]:
    return {r[0] for r in conn.execute("SELECT location FROM locations WHERE source=?", (source_id,))}


def involves(pm: ParsedMessage, addrs: set[str]) -> bool:
    """The message is from or to one of `addrs` (tombstoned contacts are never stored again)."""
    return pm.from_addr in addrs or any(a in addrs for a, _ in pm.to) or any(a in addrs for a, _ in pm.cc)


def save_batch(
    conn: sqlite3.Connection,
    source_id: int,
    items: Iterable[tuple[str, ParsedMessage | None, bool, str]],
    done_offset: int | None = None,
) -> BatchResult:
    """Store a batch and advance the source cursor in ONE transaction: a crash keeps all or none of it.

    Items are (location, parsed message or None for an unreadable one, found in a sent folder, its content
    hash as the parser computed it, or "" to compute it here).
    """
    result = BatchResult()
    forgotten = {r[0] for r in conn.execute("SELECT addr FROM tombstones")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for location, pm, sent_hint, chash in items:
            if pm is None or (forgotten and involves(pm, forgotten)):
                result.skipped += 1
                continue
            _save_one(conn, source_id, location, pm, sent_hint, result, chash)
        if done_offset is not None:
            conn.execute("UPDATE sources SET done_offset=? WHERE id=?", (done_offset, source_id))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return result


def _find_existing(conn: sqlite3.Connection, pm: ParsedMessage, chash: str) -> tuple[int | None, bool]:
    """(stored message this one duplicates, whether its Message-ID is already taken by another message)."""
    id_taken = False
    if pm.message_id:
        row = conn.execute(
            "SELECT m.id, m.from_addr, m.date_ts FROM message_ids i JOIN messages m ON m.id=i.message "
            "WHERE i.msgid=?",
            (pm.message_id,),
        ).fetchone()
        if row is not None:
            if row[1] == pm.from_addr and row[2] == pm.date_ts:
                return int(row[0]), False
            id_taken = True  # same Message-ID, different message: not trustworthy
    row = conn.execute("SELECT id FROM messages WHERE content_hash=? LIMIT 1", (chash,)).fetchone()
    return (int(row[0]) if row else None), id_taken


def _save_one(
    conn: sqlite3.Connection, source_id: int, location: str, pm: ParsedMessage, sent_hint: bool,
    result: BatchResult, chash: str | None = None,
) -> None:
    chash = chash or pm.content_hash()  # a sync worker may have hashed it already, off the writer's thread
    existing, id_taken = _find_existing(conn, pm, chash)
    if existing is not None:
        result.duplicates += 1
        if pm.message_id and not id_taken:
            conn.execute("INSERT OR IGNORE INTO message_ids VALUES (?,?)", (pm.message_id, existing))
        if sent_hint:
            conn.execute("UPDATE messages SET sent_hint=1 WHERE id=?", (existing,))
        conn.execute("INSERT OR REPLACE INTO locations VALUES (?,?,?)", (source_id, location, existing))
        return
    defects = list(pm.defects)
    if id_taken:
        defects.append("duplicate_message_id")
    if defects:
        result.defects += 1
    sent = sent_hint or "Sent" in pm.gm_labels
    cur = conn.execute(
        "INSERT INTO messages(message_id, content_hash, gm_thrid, date_ts, from_addr, from_name, subject,"
        " norm_subject, in_reply_to, refs, is_reply, is_forward, sent_hint, bulk, n_to, n_cc,"
        " own_fp, quote_fp, has_attachment, attachment_names, labels, size, defects, first_source)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            pm.message_id, chash, pm.gm_thrid, pm.date_ts, pm.from_addr, pm.from_name, pm.subject,
            pm.norm_subject, pm.in_reply_to, " ".join(pm.references), int(pm.is_reply), int(pm.is_forward),
            int(sent), pm.bulk, len(pm.to), len(pm.cc), pm.own_fp, pm.quote_fp,
            int(pm.has_attachment), "\n".join(pm.attachment_names), "\n".join(pm.gm_labels), pm.size,
            "\n".join(defects), source_id,
        ),
    )
    mid = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO texts VALUES (?,?,?)", (mid, pm.own_text, pm.body_text))
    result.new += 1
    if pm.message_id and not id_taken:
        conn.execute("INSERT OR IGNORE INTO message_ids VALUES (?,?)", (pm.message_id, mid))
    rows = [(mid, a, "to") for a, _ in pm.to] + [(mid, a, "cc") for a, _ in pm.cc]
    conn.executemany("INSERT OR IGNORE INTO recipients VALUES (?,?,?)", rows)
    named = [(a, n) for a, n in [(pm.from_addr, pm.from_name), *pm.to, *pm.cc] if a and n]
    conn.executemany("INSERT INTO names VALUES (?,?) ON CONFLICT(addr) DO NOTHING", named)
    conn.execute("INSERT OR REPLACE INTO locations VALUES (?,?,?)", (source_id, location, mid))


def infer_identity(conn: sqlite3.Connection) -> list[str]:
    """The owner's addresses as seen in sent folders: each sent source's dominant From address."""
    rows = conn.execute(
        "SELECT l.source, m.from_addr, count(*) FROM locations l JOIN messages m ON m.id=l.message "
        "WHERE m.sent_hint=1 AND m.from_addr!='' GROUP BY l.source, m.from_addr"
    ).fetchall()
    per_source: dict[int, list[tuple[int, str]]] = {}
    for source, addr, n in rows:
        per_source.setdefault(source, []).append((n, addr))
    found: set[str] = set()
    for counts in per_source.values():
        total = sum(n for n, _ in counts)
        n, addr = max(counts)
        if n * 2 >= total:
            found.add(addr)
    return sorted(found)


def save_identity(conn: sqlite3.Connection, configured: list[str], inferred: list[str]) -> None:
    """Record the owner's addresses and recompute every message's direction from them."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM identity")
        conn.executemany("INSERT OR IGNORE INTO identity VALUES (?, 'config')", [(a,) for a in configured])
        conn.executemany("INSERT OR IGNORE INTO identity VALUES (?, 'inferred')", [(a,) for a in inferred])
        # only the rows whose direction changes: rewriting every row costs a full copy of the table
        conn.execute(
            "UPDATE messages SET direction=CASE WHEN direction='sent' THEN 'received' ELSE 'sent' END "
            "WHERE direction != CASE WHEN from_addr IN (SELECT addr FROM identity) THEN 'sent' ELSE 'received' END"
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def load_identity(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT addr, origin FROM identity ORDER BY addr"))


_CONTACTS_SQL = """
SELECT count(DISTINCT addr) FROM (
    SELECT from_addr AS addr FROM messages WHERE direction='received' AND bulk=''
    UNION
    SELECT r.addr FROM recipients r JOIN messages m ON m.id=r.message WHERE m.direction='sent' AND m.bulk=''
) WHERE addr != '' AND addr NOT IN (SELECT addr FROM identity)
"""


def load_status(conn: sqlite3.Connection) -> dict:
    """What the store holds, for `mailaudit status`."""
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    first, last = conn.execute("SELECT min(date_ts), max(date_ts) FROM messages").fetchone()
    identity = load_identity(conn)
    sources = [
        {"kind": k, "path": p, "folder": f, "messages": n, "complete": bool(c)}
        for k, p, f, n, c in conn.execute(
            "SELECT s.kind, s.path, s.folder, (SELECT count(*) FROM locations l WHERE l.source=s.id), s.complete "
            "FROM sources s ORDER BY s.id"
        )
    ]
    return {
        "messages": one("SELECT count(*) FROM messages"),
        "threads": one("SELECT count(DISTINCT thread_id) FROM messages"),
        "contacts": one(_CONTACTS_SQL),
        "defects": one("SELECT count(*) FROM messages WHERE defects!=''"),
        "bulk": one("SELECT count(*) FROM messages WHERE bulk!=''"),
        "sent": one("SELECT count(*) FROM messages WHERE direction='sent'"),
        "received": one("SELECT count(*) FROM messages WHERE direction='received'"),
        "first_date": _iso_date(first),
        "last_date": _iso_date(last),
        "me": sorted(identity),
        "me_inferred": sorted(a for a, o in identity.items() if o == "inferred"),
        "sources": sources,
    }


def _iso_date(ts: int | None) -> str | None:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts is not None else None


ACTS = ("intro_request", "handoff", "thank_you", "reciprocal_ask")


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def save_labels(conn: sqlite3.Connection, labels: dict[int, list[str]], origin: str) -> int:
    """Store the user's labels (message id -> acts); a label replaces any earlier one for that message."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO labels(message, acts, origin, labelled_at) VALUES (?,?,?,?)",
            [(mid, ";".join(a for a in ACTS if a in acts), origin, _now_iso()) for mid, acts in labels.items()],
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return len(labels)


def save_predictions(
    conn: sqlite3.Connection, model: str, rows: list[tuple[int, tuple[float, float, float, float], list[str]]]
) -> None:
    """Store (message id, per-act probabilities in ACTS order, predicted acts) for one model version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO predictions(message, model, intro_request, handoff, thank_you, reciprocal_ask,"
            " acts) VALUES (?,?,?,?,?,?,?)",
            [(mid, model, *probs, ";".join(acts)) for mid, probs, acts in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def load_effective_acts(conn: sqlite3.Connection) -> dict[int, list[str]]:
    """Each message's acts: the user's label where there is one, else the model's prediction."""
    out: dict[int, list[str]] = {}
    for mid, acts in conn.execute("SELECT message, acts FROM predictions"):
        out[mid] = acts.split(";") if acts else []
    for mid, acts in conn.execute("SELECT message, acts FROM labels"):
        out[mid] = acts.split(";") if acts else []
    return out


def find_message(conn: sqlite3.Connection, message_id: str) -> int | None:
    """A stored message by any Message-ID it was seen under (angle brackets optional)."""
    mid = message_id.strip().strip("<>").strip()
    row = conn.execute("SELECT message FROM message_ids WHERE msgid=?", (mid,)).fetchone()
    return int(row[0]) if row else None


# --- IMAP sync: a cursor per (account, folder), advanced only in the transaction that stores its batch ---


def load_thread_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM threads").fetchone()[0]


def has_unthreaded(conn: sqlite3.Connection) -> bool:
    """Stored messages not yet threaded: a run was stopped between storing them and settling."""
    return conn.execute("SELECT 1 FROM messages WHERE thread_id IS NULL LIMIT 1").fetchone() is not None

