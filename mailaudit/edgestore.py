"""The audit's contact edges built in the store, so no step holds the whole mailbox.

One pass reads the messages a slice at a time (with their recipients) and writes their edges into a temp
table; the edges are then read back in contact order and handed out a chunk of contacts at a time. SQLite
sorts and keeps the temp tables on disk, within its page cache, so memory follows the chunk size and the
contact table, not the number of messages. Each chunk is the one edges.frame_chunks would give for the same
contacts (tests/test_edgestore.py checks the whole audit both ways).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import numpy as np
import pandas as pd

from mailaudit.config import RelationsConfig
from mailaudit.edges import CHUNK_EDGES, INPUT_COLUMNS, KEYED_COLUMNS, KEYED_DTYPES, contact_prepared, message_edges
from mailaudit.flags import Prepared
from mailaudit.frames import ACTS_SQL

MESSAGE_SLICE = 50_000  # messages read and turned into edges at once
# an edge in the temp table: the contact as a number (its key in a list beside), the booleans as bits
_STORED = ("contact", "message", "ts", "thread", "bits", "n_other")
_BITS = ("mine", "is_reply", "opener", "ask", "handoff", "thank_you", "reciprocal_ask")
_KEEP = "m.date_ts IS NOT NULL AND m.date_ts < :as_of AND m.bulk = ''"  # as frames + relations: dated, non-bulk

_SCHEMA = f"""
DROP TABLE IF EXISTS temp.audit_openers;
DROP TABLE IF EXISTS temp.audit_edges;
DROP TABLE IF EXISTS temp.audit_mine;
DROP TABLE IF EXISTS temp.audit_handoff_rcpt;
CREATE TEMP TABLE audit_openers (id INTEGER PRIMARY KEY);
CREATE TEMP TABLE audit_edges ({", ".join(_STORED)});
CREATE TEMP TABLE audit_mine (id INTEGER PRIMARY KEY, thread INTEGER, ts INTEGER);
CREATE TEMP TABLE audit_handoff_rcpt (message INTEGER, key TEXT);
"""
_OPENERS = f"""
INSERT INTO temp.audit_openers
SELECT id FROM (
    SELECT m.id, row_number() OVER (PARTITION BY coalesce(m.thread_id, -m.id) ORDER BY m.date_ts, m.id) AS rank
    FROM messages m WHERE {_KEEP}
) WHERE rank = 1
"""


def store_chunks(
    conn: sqlite3.Connection, me: set[str], keyed: dict[str, str], names: dict[str, str], as_of_ts: int,
    cfg: RelationsConfig, chunk_edges: int = CHUNK_EDGES, message_slice: int | None = None,
) -> Iterator[Prepared]:
    """The store's contacts as of `as_of_ts`, a chunk at a time (at least one chunk, empty when there is no mail).
    The temp tables live on this connection until the chunks are all read (or the generator is closed)."""
    _script(conn, _SCHEMA)
    try:
        conn.execute(_OPENERS, {"as_of": as_of_ts})
        contacts: dict[str, int] = {}  # key -> its number in the temp table
        for msgs, recipients in _slices(conn, as_of_ts, message_slice or MESSAGE_SLICE):
            _save_slice(conn, msgs, recipients, me, keyed, contacts)
        conn.execute("CREATE INDEX temp.audit_mine_thread ON audit_mine(thread)")
        conn.execute("CREATE INDEX temp.audit_handoff_rcpt_message ON audit_handoff_rcpt(message)")
        keys = np.asarray(list(contacts), dtype=object)
        yield from _chunks(conn, keys, names, as_of_ts, cfg, chunk_edges)
    finally:
        _script(conn, _SCHEMA.split("CREATE")[0])


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Statement by statement: executescript would first commit whatever transaction the caller has open."""
    for statement in filter(str.strip, sql.split(";")):
        conn.execute(statement)


def message_ids(conn: sqlite3.Connection, pks: set[int]) -> dict[int, str]:
    """Message pk -> '<Message-ID>' for the evidence the audit cites (messages without one are left out)."""
    rows = conn.execute(
        "SELECT id, message_id FROM messages WHERE id IN (SELECT value FROM json_each(?)) AND message_id IS NOT NULL",
        (json.dumps(sorted(pks)),),
    )
    return {int(i): f"<{m}>" for i, m in rows if m}


def _slices(conn: sqlite3.Connection, as_of_ts: int, size: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(messages as INPUT_COLUMNS, their recipients (message, addr)) for consecutive id ranges."""
    sql = (
        "SELECT m.id, coalesce(m.thread_id, -m.id), m.date_ts, m.from_addr, m.is_reply, " + ACTS_SQL +
        ", o.id IS NOT NULL FROM messages m NOT INDEXED LEFT JOIN labels l ON l.message = m.id"
        " LEFT JOIN predictions p ON p.message = m.id LEFT JOIN temp.audit_openers o ON o.id = m.id"
        f" WHERE {_KEEP} AND m.id > :after ORDER BY m.id LIMIT :size"
    )  # NOT INDEXED: walk the rowid from `after`, never sort by the date index
    after = -1 << 62
    while rows := conn.execute(sql, {"as_of": as_of_ts, "after": after, "size": size}).fetchall():
        msgs = pd.DataFrame(rows, columns=list(INPUT_COLUMNS))
        for col in ("is_reply", "opener", *INPUT_COLUMNS[5:-1]):
            msgs[col] = msgs[col].astype(bool)
        lo, after = int(msgs["id"].iat[0]), int(msgs["id"].iat[-1])
        recipients = pd.DataFrame(
            conn.execute("SELECT message, addr FROM recipients WHERE message BETWEEN ? AND ?", (lo, after)).fetchall(),
            columns=["message", "addr"],
        )
        yield msgs, recipients


def _save_slice(
    conn: sqlite3.Connection, msgs: pd.DataFrame, recipients: pd.DataFrame, me: set[str], keyed: dict[str, str],
    contacts: dict[str, int],
) -> None:
    edges, rec = message_edges(msgs, recipients, me, keyed)
    stored = pd.DataFrame({
        "contact": [contacts.setdefault(k, len(contacts)) for k in edges["key"]],
        "message": edges["message"], "ts": edges["ts"], "thread": edges["thread"],
        "bits": sum(edges[c].to_numpy(dtype=np.int64) << i for i, c in enumerate(_BITS)),
        "n_other": edges["n_other"],
    })
    own = msgs.loc[msgs["from_addr"].isin(me).to_numpy(), ["id", "thread_id", "ts"]]
    handoff = rec[rec["message"].isin(msgs.loc[msgs["handoff"].to_numpy(), "id"]).to_numpy()]
    own_txn = not conn.in_transaction  # one transaction a slice, not one a row (the store is in autocommit)
    if own_txn:
        conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO temp.audit_edges VALUES ({', '.join('?' * len(_STORED))})", _rows(stored))
    conn.executemany("INSERT INTO temp.audit_mine VALUES (?, ?, ?)", _rows(own))
    conn.executemany("INSERT INTO temp.audit_handoff_rcpt VALUES (?, ?)", _rows(handoff))
    if own_txn:
        conn.execute("COMMIT")


def _rows(df: pd.DataFrame) -> Iterator[tuple]:
    """Plain Python values (sqlite3 binds no numpy scalars)."""
    return zip(*(df[c].tolist() for c in df.columns), strict=True)


def _chunks(
    conn: sqlite3.Connection, keys: np.ndarray, names: dict[str, str], as_of_ts: int, cfg: RelationsConfig,
    chunk_edges: int,
) -> Iterator[Prepared]:
    """Whole contacts, about chunk_edges edges at a time, in the temp table's contact order (any order would do:
    the audit sorts its contacts and flags itself). Edges wait as int64 rows, not tuples: a contact busier than
    a chunk waits whole, and as tuples its edges took 280 bytes each (32 MB for the busiest of 1,000,000)."""
    cur = conn.execute(f"SELECT {', '.join(_STORED)} FROM temp.audit_edges ORDER BY contact, ts, message")
    pending = np.empty((0, len(_STORED)), dtype=np.int64)
    emitted = False
    while batch := cur.fetchmany(20_000):
        pending = np.concatenate([pending, np.array(batch, dtype=np.int64)])
        while (cut := _contact_boundary(pending[:, 0], chunk_edges)) is not None:
            yield _prepared(conn, pending[:cut], keys, names, as_of_ts, cfg)
            emitted = True
            pending = pending[cut:]
    if len(pending) or not emitted:
        yield _prepared(conn, pending, keys, names, as_of_ts, cfg)


def _contact_boundary(contact: np.ndarray, size: int) -> int | None:
    """The first index at or after `size` where a new contact starts (None: not read far enough yet)."""
    start = max(size, 1)
    if start >= len(contact):
        return None
    changes = np.flatnonzero(contact[start:] != contact[start - 1 : -1])
    return start + int(changes[0]) if len(changes) else None


def _where_in(conn: sqlite3.Connection, sql: str, values: pd.Series, columns: list[str]) -> pd.DataFrame:
    """`sql` ending in a column, for the rows where it is one of `values` (passed as one JSON array)."""
    wanted = json.dumps(values.unique().tolist())
    rows = conn.execute(f"{sql} IN (SELECT value FROM json_each(?))", (wanted,)).fetchall()
    return pd.DataFrame(rows, columns=columns)


def _prepared(
    conn: sqlite3.Connection, stored: np.ndarray, keys: np.ndarray, names: dict[str, str], as_of_ts: int,
    cfg: RelationsConfig,
) -> Prepared:
    columns = dict(zip(_STORED, stored.T, strict=True))
    bits = columns.pop("bits")
    columns |= {c: (bits >> i) & 1 == 1 for i, c in enumerate(_BITS)}
    columns["key"] = keys[columns.pop("contact")]
    edges = pd.DataFrame(columns).loc[:, list(KEYED_COLUMNS)].astype(KEYED_DTYPES)
    mine = _where_in(conn, "SELECT id, thread, ts FROM temp.audit_mine WHERE thread", edges["thread"],
                     ["id", "thread", "ts"]).astype(np.int64)
    recipients = _where_in(conn, "SELECT message, key FROM temp.audit_handoff_rcpt WHERE message",
                           edges.loc[edges["handoff"].to_numpy(), "message"], ["message", "key"])
    recipients["message"] = recipients["message"].astype(np.int64)
    return contact_prepared(edges, mine, recipients, names, as_of_ts, cfg)
