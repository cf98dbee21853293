"""Threading a real store through settle (streamed passes, partial saves) gives what the old threader gives."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailaudit.config import Config
from mailaudit.settle import settle
from mailaudit.store import open_store
from mailaudit.threads import ThreadInput, build_threads
from mailaudit.threadstore import load_thread_inputs

from threadgen import mailboxes, reference_build_threads

WINDOW = Config().threads.subject_window_days


def _store(conn, items: list[ThreadInput]) -> None:
    conn.executemany(
        "INSERT INTO messages(id, message_id, content_hash, gm_thrid, date_ts, from_addr, norm_subject, in_reply_to,"
        " refs, is_reply, own_fp, quote_fp) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(it.id, it.message_id, f"h{it.id}", it.gm_thrid, it.date_ts, it.from_addr, it.norm_subject, it.in_reply_to,
          " ".join(it.references), int(it.is_reply), it.own_fp, it.quote_fp) for it in items],
    )
    conn.executemany("INSERT INTO recipients VALUES (?,?,'to')", [(it.id, a) for it in items for a in it.recipients])


def _check(conn, items: list[ThreadInput]) -> None:
    expected = reference_build_threads(sorted(items, key=lambda it: it.id), WINDOW)
    stored = dict(conn.execute("SELECT id, thread_id FROM messages"))
    assert stored == expected
    assert build_threads(load_thread_inputs(conn), WINDOW) == expected
    threads = dict(conn.execute("SELECT id, n_messages FROM threads"))
    assert threads == {r: list(expected.values()).count(r) for r in set(expected.values())}


@settings(max_examples=100, deadline=None)
@given(mailboxes(), st.randoms(use_true_random=False))
def test_settle_threads_a_store_like_the_old_threader_whole_then_new_mail_then_forget(items, rng: random.Random):
    """A first import, then new mail (the incremental path: affected messages only), then deleted mail."""
    new = {it.id for it in items if rng.random() < 0.1}
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_store(Path(tmp) / "s.db")
        _store(conn, [it for it in items if it.id not in new])
        settle(conn, Config())
        _check(conn, [it for it in items if it.id not in new])
        _store(conn, [it for it in items if it.id in new])
        settle(conn, Config())
        _check(conn, items)
        gone = {it.id for it in items if rng.random() < 0.2}
        conn.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in gone])
        settle(conn, Config())
        _check(conn, [it for it in items if it.id not in gone])
        conn.close()
