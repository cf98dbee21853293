"""After new mail is stored (import, sync, forget): who the owner is, and the threads it moves."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from mailaudit import store
from mailaudit.addresses import normalise_address
from mailaudit.config import Config
from mailaudit.threads import affected_messages, build_threads


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
    keys = store.load_thread_keys(conn)
    ids = None if store.threads_stale(conn) else affected_messages(keys)
    if ids is None or ids:
        roots = build_threads(store.load_thread_inputs(conn, ids), cfg.threads.subject_window_days)
        if ids is not None:  # the others keep their thread
            roots = {**{k[0]: k[7] for k in keys}, **roots}
        del keys
        store.save_threads(conn, roots)
    return Settled(configured or inferred, store.load_thread_count(conn))
