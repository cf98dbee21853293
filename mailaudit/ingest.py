"""Sources -> store: parse, deduplicate and save in committed batches, then settle identity and threads."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailaudit import store
from mailaudit.addresses import normalise_address
from mailaudit.archive import RawMessage, Source, discover_sources, iter_source, source_signature
from mailaudit.config import Config
from mailaudit.parse import ParsedMessage, parse_message
from mailaudit.progress import Progress, SilentProgress
from mailaudit.threads import build_threads

log = logging.getLogger(__name__)


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
        for src in sources:
            _import_source(conn, src, cfg, progress, summary)
    finally:
        progress.end()
    settle(conn, cfg, summary)
    return summary


def settle(conn: sqlite3.Connection, cfg: Config, summary: ImportSummary | None = None) -> None:
    """Recompute who the owner is (config, else inferred) and the threads, after new mail arrived."""
    configured = sorted({normalise_address(a) for a in cfg.identity.addresses})
    inferred = [] if configured else store.infer_identity(conn)
    store.save_identity(conn, configured, inferred)
    roots = build_threads(store.load_thread_inputs(conn), cfg.threads.subject_window_days)
    threads = store.save_threads(conn, roots)
    if summary is not None:
        summary.threads = threads
        summary.me = configured or inferred


def _size(src: Source) -> int:
    try:
        if src.kind == "mbox":
            return src.path.stat().st_size
        return 0
    except OSError:
        return 0


def _import_source(
    conn: sqlite3.Connection, src: Source, cfg: Config, progress: Progress, summary: ImportSummary
) -> None:
    size, mtime = source_signature(src)
    state = store.save_source(conn, src.key, src.kind, str(src.path), src.folder, src.sent_folder, size, mtime)
    if state.complete and state.unchanged and mtime is not None:
        summary.unchanged += 1
        progress.advance(_size(src))
        progress.note(f"{src.path}: unchanged since the last import, skipped")
        return
    skip = store.load_known_locations(conn, state.id) if src.kind != "mbox" else set()
    before = summary.new
    if state.done_offset:
        progress.advance(state.done_offset)
    last_offset = state.done_offset
    for batch in _batches(iter_source(src, state.done_offset, skip), cfg.import_.batch_size):
        items = [(raw.location, _parse(raw, cfg), src.sent_folder) for raw in batch]
        end = batch[-1].end_offset if src.kind == "mbox" else None
        res = store.save_batch(conn, state.id, items, end)
        summary.seen += len(batch)
        summary.new += res.new
        summary.duplicates += res.duplicates
        summary.skipped += res.skipped
        summary.defects += res.defects
        if end is not None:
            progress.advance(end - last_offset, len(batch))
            last_offset = end
        else:
            progress.advance(0, len(batch))
    store.mark_source_complete(conn, state.id)
    progress.note(f"{src.path}: {summary.new - before} new messages")
    log.info("imported %s (%s): %d new", src.path, src.kind, summary.new - before)


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
