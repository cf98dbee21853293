"""After new mail is stored (import, sync, forget): who the owner is, and the threads it moves."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial

from mailaudit import store, threadstore
from mailaudit.addresses import normalise_address
from mailaudit.config import Config
from mailaudit.threads import Threader, ThreadKeys, affected_messages


@dataclass(frozen=True)
class Settled:
    me: list[str]
    threads: int


def settle(conn: sqlite3.Connection, cfg: Config) -> Settled:
    """Owner from the config, else inferred; then only the messages new mail can move are threaded again
    (threads.affected_messages), which gives what threading the whole store would. After `forget` deleted
    mail, every thread is redone."""
    configured = sorted({normalise_address(a) for a in cfg.identity.addresses})
    inferred = [] if configured else store.infer_identity(conn)
    store.save_identity(conn, configured, inferred)
    ids = None if threadstore.threads_stale(conn) else affected_messages(_thread_keys(conn))
    if ids is None or ids:
        thread_messages(conn, ids, cfg.threads.subject_window_days)
    return Settled(configured or inferred, store.load_thread_count(conn))


def _thread_keys(conn: sqlite3.Connection) -> ThreadKeys:
    total, unthreaded = threadstore.load_message_counts(conn)
    return ThreadKeys(total, unthreaded, partial(threadstore.load_unthreaded_keys, conn),
                      partial(threadstore.iter_thread_keys, conn))


def thread_messages(conn: sqlite3.Connection, ids: Collection[int] | None, window_days: int) -> None:
    """Thread these messages (None: all) in two streamed passes and save it; the others keep their thread."""
    threader = Threader(window_days)
    threader.add_headers(threadstore.iter_thread_headers(conn, ids))
    rows = threadstore.iter_subject_rows(conn, threader.fallback_ids(), ids)
    threader.join_subjects(rows, partial(threadstore.load_recipients, conn))
    threadstore.save_threads(conn, threader.roots())
