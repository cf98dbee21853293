"""Store reads for the classifier: its inputs per message, what still needs predicting, labels for training."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from mailaudit.features import MessageInput

_INPUT_SQL = """
SELECT m.id, coalesce(t.own_text, ''), m.subject, m.direction, m.is_reply, m.is_forward,
       (SELECT count(*) FROM messages p WHERE p.thread_id = m.thread_id
            AND (p.date_ts < m.date_ts OR (p.date_ts = m.date_ts AND p.id < m.id))) AS pos,
       m.n_to, m.n_cc, m.attachment_names
FROM messages m LEFT JOIN texts t ON t.message = m.id
"""


def _row_input(r: tuple) -> tuple[int, MessageInput]:
    return r[0], MessageInput(
        own_text=r[1], subject=r[2], direction=r[3], is_reply=bool(r[4]), is_forward=bool(r[5]),
        thread_pos=int(r[6] or 0), n_to=int(r[7]), n_cc=int(r[8]), attachment_names=r[9],
    )


def iter_unpredicted(conn: sqlite3.Connection, model_version: str, batch: int = 20000) -> Iterator[
    list[tuple[int, MessageInput]]
]:
    """Batches of messages with no prediction from this model version (new mail, or a new model)."""
    sql = _INPUT_SQL + (
        " LEFT JOIN predictions pr ON pr.message = m.id AND pr.model = ?"
        " WHERE pr.message IS NULL AND m.bulk = '' ORDER BY m.id"
    )
    cur = conn.execute(sql, (model_version,))
    while True:
        rows = cur.fetchmany(batch)
        if not rows:
            return
        yield [_row_input(r) for r in rows]


def count_unpredicted(conn: sqlite3.Connection, model_version: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM messages m LEFT JOIN predictions pr ON pr.message = m.id AND pr.model = ?"
        " WHERE pr.message IS NULL AND m.bulk = ''",
        (model_version,),
    ).fetchone()[0]


def load_inputs(conn: sqlite3.Connection, ids: list[int]) -> dict[int, MessageInput]:
    out: dict[int, MessageInput] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(_INPUT_SQL + f" WHERE m.id IN ({marks})", chunk):
            mid, inp = _row_input(r)
            out[mid] = inp
    return out


def load_stored_labels(conn: sqlite3.Connection) -> dict[int, list[str]]:
    return {mid: (acts.split(";") if acts else []) for mid, acts in conn.execute("SELECT message, acts FROM labels")}


def load_thread_ids(conn: sqlite3.Connection, ids: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(f"SELECT id, thread_id FROM messages WHERE id IN ({marks})", chunk))
    return out


def load_export_rows(
    conn: sqlite3.Connection, contact: str | None = None, thread: str | None = None
) -> list[dict]:
    """Messages (not bulk) with what the label spreadsheet shows, filtered by contact or thread."""
    where, args = ["m.bulk = ''"], []
    if contact:
        where.append("(m.from_addr = ? OR EXISTS (SELECT 1 FROM recipients r WHERE r.message = m.id AND r.addr = ?))")
        args += [contact, contact]
    if thread:
        where.append("(CAST(m.thread_id AS TEXT) = ? OR m.gm_thrid = ?)")
        args += [thread, thread]
    sql = (
        "SELECT m.id, m.message_id, m.thread_id, m.date_ts, m.direction, m.from_addr,"
        " (SELECT group_concat(addr, ' ') FROM recipients r WHERE r.message = m.id), m.subject, t.own_text,"
        " pr.intro_request, pr.handoff, pr.thank_you, pr.reciprocal_ask, pr.acts"
        " FROM messages m LEFT JOIN predictions pr ON pr.message = m.id LEFT JOIN texts t ON t.message = m.id"
        f" WHERE {' AND '.join(where)} ORDER BY m.date_ts"
    )
    keys = ["id", "message_id", "thread_id", "date_ts", "direction", "from", "to", "subject", "own_text",
            "p_intro_request", "p_handoff", "p_thank_you", "p_reciprocal_ask", "predicted"]
    return [dict(zip(keys, r, strict=True)) for r in conn.execute(sql, args)]
