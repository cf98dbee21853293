"""Sources -> store: parse, deduplicate and save in committed batches, then settle identity and threads."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import sqlite3
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailaudit import store
from mailaudit.archive import RawMessage, Source, discover_sources, iter_source, source_signature
from mailaudit.config import Config
from mailaudit.parse import ParsedMessage, parse_message
from mailaudit.progress import Progress, SilentProgress
from mailaudit.settle import settle as settle_store

log = logging.getLogger(__name__)
PARALLEL_MIN_BYTES = 4 * 1024 * 1024


@dataclass
class ImportSummary:
    sources: int = 0
    unchanged: int = 0
    seen: int = 0
    new: int = 0
    duplicates: int = 0
    skipped: int = 0
    defects: int = 0
    threads: int = 0
    me: list[str] = field(default_factory=list)


def import_paths(
    conn: sqlite3.Connection, paths: list[str], cfg: Config, progress: Progress | None = None
) -> ImportSummary:
    """Import every mailbox under `paths`; each batch commits with its cursor, so Ctrl-C loses nothing stored."""
    progress = progress or SilentProgress()
    sources = discover_sources(paths)
    summary = ImportSummary(sources=len(sources))
    total = sum(_size(s) for s in sources)
    progress.begin("import", total or None, "B")
    try:
        plans = [p for p in (_plan(conn, src, progress, summary) for src in sources) if p is not None]
        with _parser_pool(total) as pool, store.background_checkpoints(conn) if pool else contextlib.nullcontext():
            _run(conn, plans, cfg, pool, progress, summary)  # a big import checkpoints off the commit path
    finally:
        progress.end()
    settle(conn, cfg, summary)
    return summary


@dataclass
class _Plan:
    """One source to read, registered in the store before any reading starts."""

    src: Source
    source_id: int
    start_offset: int
    skip: set[str]
    new_before: int = 0


def _plan(conn: sqlite3.Connection, src: Source, progress: Progress, summary: ImportSummary) -> _Plan | None:
    size, mtime = source_signature(src)
    state = store.save_source(conn, src.key, src.kind, str(src.path), src.folder, src.sent_folder, size, mtime)
    if state.complete and state.unchanged and mtime is not None:
        summary.unchanged += 1
        progress.advance(_size(src))
        progress.note(f"{src.path}: unchanged since the last import, skipped")
        return None
    if state.done_offset:
        progress.advance(state.done_offset)
    skip = store.load_known_locations(conn, state.id) if src.kind != "mbox" else set()
    return _Plan(src, state.id, state.done_offset, skip)


def _jobs(plans: list[_Plan], cfg: Config) -> Iterator[_Job]:
    """One stream of batches over every source (so small files parse in parallel too); an empty batch
    closes a source. It reads files only, never the store."""
    for index, plan in enumerate(plans):
        for batch in _batches(iter_source(plan.src, plan.start_offset, plan.skip), cfg.import_.batch_size):
            yield index, batch, cfg
        yield index, [], cfg


def _run(
    conn: sqlite3.Connection, plans: list[_Plan], cfg: Config, pool: multiprocessing.pool.Pool | None,
    progress: Progress, summary: ImportSummary,
) -> None:
    jobs = _jobs(plans, cfg)
    offsets = {i: p.start_offset for i, p in enumerate(plans)}
    for index, batch, results in _in_order(pool, jobs) if pool else map(_parse_batch, jobs):
        plan = plans[index]
        if not batch:
            store.mark_source_complete(conn, plan.source_id)
            new = summary.new - plan.new_before
            progress.note(f"{plan.src.path}: {new} new messages")
            log.info("imported %s (%s): %d new", plan.src.path, plan.src.kind, new)
            if index + 1 < len(plans):
                plans[index + 1].new_before = summary.new
            continue
        _save(conn, plan.src, plan.source_id, batch, results, summary)
        if plan.src.kind == "mbox":
            progress.advance(batch[-1].end_offset - offsets[index], len(batch))
            offsets[index] = batch[-1].end_offset
        else:
            progress.advance(0, len(batch))


def _in_order(pool: multiprocessing.pool.Pool, jobs: Iterator[_Job]) -> Iterator[_Parsed]:
    """_parse_batch over the jobs in the pool, in order, at most a few batches ahead of the writer. (Pool.imap
    reads every job at once and keeps every result the writer has not taken yet: when the writer is the slower
    side, memory grew with the mailbox, 330 MB at 1,000,000 messages.)"""
    ahead = 2 * getattr(pool, "_processes", 2)
    pending: deque[multiprocessing.pool.AsyncResult] = deque()
    for job in jobs:
        pending.append(pool.apply_async(_parse_batch, (job,)))
        if len(pending) > ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def settle(conn: sqlite3.Connection, cfg: Config, summary: ImportSummary | None = None) -> None:
    """Owner and threads after new mail (mailaudit.settle), recorded in the import's summary."""
    done = settle_store(conn, cfg)
    if summary is not None:
        summary.threads = done.threads
        summary.me = done.me


def _size(src: Source) -> int:
    """Bytes to read: the mbox file, or an estimate of 4 KB per Maildir/.eml file."""
    try:
        if src.kind == "mbox":
            return src.path.stat().st_size
        if src.kind == "maildir":
            return 4096 * sum(len(os.listdir(src.path / d)) for d in ("cur", "new") if (src.path / d).is_dir())
        return 4096
    except OSError:
        return 0


def _save(
    conn: sqlite3.Connection, src: Source, source_id: int, batch: list[RawMessage],
    results: list[tuple[ParsedMessage, str] | None], summary: ImportSummary,
) -> None:
    items = [(raw.location, r[0] if r else None, src.sent_folder, r[1] if r else "")
             for raw, r in zip(batch, results, strict=True)]
    end = batch[-1].end_offset if src.kind == "mbox" else None
    res = store.save_batch(conn, source_id, items, end)
    summary.seen += len(batch)
    summary.new += res.new
    summary.duplicates += res.duplicates
    summary.skipped += res.skipped
    summary.defects += res.defects


_Job = tuple[int, list[RawMessage], Config]  # (plan index, raw messages, config); no messages: that plan is done
_Parsed = tuple[int, list[RawMessage], list[tuple[ParsedMessage, str] | None]]


def _parse_batch(job: _Job) -> _Parsed:
    """Parse and hash a batch (in a worker: that is off the writer's thread); the raw bytes are not sent back
    (the caller needs only locations and offsets)."""
    index, batch, cfg = job
    results = [(pm, pm.content_hash()) if (pm := _parse(raw, cfg)) is not None else None for raw in batch]
    return index, [RawMessage(b"", raw.location, raw.end_offset) for raw in batch], results


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


@contextlib.contextmanager
def _parser_pool(size: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """Parse on every core for big mailboxes; small ones are not worth a process start."""
    workers = min(os.cpu_count() or 1, 4)
    if size < PARALLEL_MIN_BYTES or workers < 2:
        yield None
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(workers, initializer=_ignore_sigint)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _parse(raw: RawMessage, cfg: Config) -> ParsedMessage | None:
    if raw.end_offset < 0 or not raw.data.strip():
        return None
    return parse_message(raw.data, cfg.parse)


def _batches(it: Iterator[RawMessage], size: int) -> Iterator[list[RawMessage]]:
    batch: list[RawMessage] = []
    for raw in it:
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
