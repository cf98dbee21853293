"""One writer per store: a file lock beside the store (filelock: well kept, cross-platform, stale-safe)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailaudit.errors import LockHeldError


@contextmanager
def store_lock(db: Path) -> Iterator[None]:
    """Hold <store>.lock for the block; when another process holds it, fail at once (cron overlap)."""
    from filelock import FileLock, Timeout

    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(str(db) + ".lock", timeout=0, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeldError(f"another mailaudit run holds {db}.lock; this run stops (try again later)") from None
    try:
        yield
    finally:
        lock.release()
