"""`mailaudit sync`: fetch_* from each IMAP account, save_* into the store batch by batch, then settle."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailaudit import store, syncstore
from mailaudit.config import AccountConfig, Config, ParseConfig
from mailaudit.errors import ConfigError, MailauditError, SourceUnavailableError
from mailaudit.imap_sync import (
    FolderPlan,
    FolderStatus,
    ImapAccount,
    ImapMessage,
    MissingFolders,
    UidValidityChanged,
    plan_folders,
    uid_batches,
)
from mailaudit.progress import Progress, SilentProgress
from mailaudit.secrets import fetch_access_token, fetch_password
from mailaudit.settle import settle

if TYPE_CHECKING:  # parsing and processes are imported when there is mail: a no-change sync starts faster
    from concurrent.futures import ProcessPoolExecutor

    from mailaudit.parse import ParsedMessage

log = logging.getLogger(__name__)

POOL_MIN_MESSAGES = 2000  # below this, fetching and parsing in worker processes costs more than it saves
RELINK_BATCH = 2000
# MIME damage that only says we cut the text short, not that the message is broken
_TRUNCATION_DEFECTS = {"CloseBoundaryNotFoundDefect", "StartBoundaryNotFoundDefect", "InvalidBase64PaddingDefect",
                       "InvalidBase64LengthDefect", "MissingHeaderBodySeparatorDefect"}


@dataclass
class FolderSummary:
    account: str
    folder: str
    unchanged: bool = False
    fetched: int = 0  # messages whose header and text were downloaded
    new: int = 0
    duplicates: int = 0
    relinked: int = 0  # known messages found again under a new UIDVALIDITY, not downloaded
    skipped: int = 0
    defects: int = 0


@dataclass
class SyncSummary:
    folders: list[FolderSummary] = field(default_factory=list)
    failures: list[MailauditError] = field(default_factory=list)
    accounts: int = 0
    threads: int = 0
    me: list[str] = field(default_factory=list)

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.folders)


def sync_accounts(
    conn: sqlite3.Connection, cfg: Config, names: list[str] | None = None, progress: Progress | None = None
) -> SyncSummary:
    """Sync the named accounts (default: all). An account that fails is reported in `failures` while the
    others go on; when every account failed, the first error is raised."""
    progress = progress or SilentProgress()
    accounts = _select(cfg, names)
    summary = SyncSummary(accounts=len(accounts))
    for account in accounts:
        try:
            sync_account(conn, cfg, account, progress, summary)
        except MailauditError as exc:
            log.debug("%s failed: %s", account.name, exc)
            summary.failures.append(exc)
    changed = summary.total("new") or summary.total("relinked") or summary.total("duplicates")
    # an earlier run killed after storing a batch left messages unthreaded: settle them now
    if changed or store.has_unthreaded(conn):
        done = settle(conn, cfg)
        summary.me, summary.threads = done.me, done.threads
    if summary.failures and len(summary.failures) == len(accounts):
        for exc in summary.failures[1:]:  # the first becomes the error line; the others must not be lost
            log.error("%s", exc)
        raise summary.failures[0]
    return summary


def _select(cfg: Config, names: list[str] | None) -> list[AccountConfig]:
    if not cfg.accounts:
        raise ConfigError(f"{cfg.source}: no [[accounts]] configured; add one (see config.example.toml)")
    if not names:
        return list(cfg.accounts)
    known = {a.name: a for a in cfg.accounts}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{cfg.source}: no account named {', '.join(unknown)} (configured: {', '.join(known)})")
    return [known[n] for n in names]


def credential_for(account: AccountConfig) -> Callable[[bool], str]:
    """credential(force_refresh): the password (fetched once, kept in memory for reconnects) or an access token."""
    if account.auth == "oauth2":
        return lambda force: fetch_access_token(account, force_refresh=force)
    cache: list[str] = []

    def password(force: bool) -> str:
        if not cache:
            cache.append(fetch_password(account))
        return cache[0]

    return password


def sync_account(
    conn: sqlite3.Connection, cfg: Config, account: AccountConfig, progress: Progress, summary: SyncSummary
) -> None:
    imap = ImapAccount(account, cfg.sync, credential_for(account))
    imap.connect()
    try:
        try:
            plans = plan_folders(imap.list_folders(), imap.capabilities, account.folders)
        except MissingFolders as exc:
            raise SourceUnavailableError(
                f"account '{account.name}': folder {exc} not found on the server; check folders in its "
                "[[accounts]] table") from None
        for plan in plans:
            for attempt in range(3):
                try:
                    summary.folders.append(_sync_folder(conn, cfg, imap, plan, progress))
                    break
                except UidValidityChanged:
                    if attempt == 2:
                        raise SourceUnavailableError(
                            f"account '{account.name}': folder '{plan.name}' keeps changing its UIDVALIDITY; "
                            "run sync again later") from None
                    log.warning("account '%s': %s changed its UIDVALIDITY during the sync; starting it again",
                                account.name, plan.name)
    finally:
        imap.close()


def _sync_folder(
    conn: sqlite3.Connection, cfg: Config, imap: ImapAccount, plan: FolderPlan, progress: Progress
) -> FolderSummary:
    account = imap.account.name
    fs = FolderSummary(account, plan.name)
    src = store.save_source(conn, f"imap:{account}/{plan.name}", "imap", f"imap://{account}/{plan.name}",
                            plan.name, plan.sent, None, None)
    cursor = syncstore.load_imap_cursor(conn, account, plan.name)
    status = imap.folder_status(plan.name)
    if cursor and cursor.uidvalidity == status.uidvalidity and status.uidnext - 1 <= cursor.last_uid:
        fs.unchanged = True  # one STATUS round trip, and the folder is never selected
        return fs
    last_uid = cursor.last_uid if cursor and cursor.uidvalidity == status.uidvalidity else 0
    known: set[int] = set()
    if cursor and cursor.uidvalidity is not None and cursor.uidvalidity != status.uidvalidity:
        last_uid = _relink(conn, cfg, imap, plan, src.id, status.uidnext, status.uidvalidity, fs)
        known = syncstore.load_known_uids(conn, src.id)
    elif cursor and cursor.uidvalidity == status.uidvalidity:
        known = syncstore.load_known_uids(conn, src.id) if last_uid < _max_known(conn, src.id) else set()
    since = imap.account.since_ts(time.time())  # the horizon holds on every run, not only the first
    uids = [u for u in imap.search_uids(plan.name, last_uid, since) if u not in known]
    label = f"{account}/{plan.name}"
    progress.begin(label, len(uids), "msg")
    try:
        _fetch_and_save(conn, cfg, imap, plan, src.id, status, uids, progress, fs)
    finally:
        progress.end()
    store.mark_source_complete(conn, src.id)
    progress.note(f"{fs.new} new, {fs.relinked} re-linked, {fs.skipped} skipped, {fs.defects} with defects")
    log.info("synced %s: %d fetched, %d new, %d re-linked", label, fs.fetched, fs.new, fs.relinked)
    return fs


def _max_known(conn: sqlite3.Connection, source_id: int) -> int:
    row = conn.execute("SELECT max(CAST(location AS INTEGER)) FROM locations WHERE source=?", (source_id,)).fetchone()
    return int(row[0] or 0)


def _fetch_and_save(
    conn: sqlite3.Connection, cfg: Config, imap: ImapAccount, plan: FolderPlan, source_id: int,
    status: FolderStatus, uids: list[int], progress: Progress, fs: FolderSummary,
) -> None:
    """Fetch, parse and store the batches; commits stay in UID order, each with its cursor. A big first sync
    fetches and parses in worker processes, each on its own connection, a few batches ahead of the writer."""
    account = imap.account.name
    batches = uid_batches(uids, cfg.sync.batch_size)
    if not batches:
        syncstore.save_imap_cursor(conn, source_id, account, plan.name, status.uidvalidity, status.uidnext - 1)
        return
    pending: deque[tuple[list[int], Future]] = deque()

    def commit(batch: list[int], fetched: Fetched) -> None:
        items: list[syncstore.ImapItem] = []
        metas, parsed = fetched
        for (uid, junk, sent, gm_msgid), (pm, chash) in zip(metas, parsed, strict=True):
            if junk:
                items.append((str(uid), None, False, None))
            elif chash:
                items.append((str(uid), pm, plan.sent or sent, gm_msgid, chash))
            else:
                items.append((str(uid), pm, plan.sent or sent, gm_msgid))
        top = max(batch[-1], status.uidnext - 1) if batch is batches[-1] else batch[-1]
        res = syncstore.save_imap_batch(conn, source_id, account, plan.name, status.uidvalidity, items, top)
        fs.fetched += len(metas)
        fs.new += res.new
        fs.duplicates += res.duplicates
        fs.skipped += res.skipped + len(batch) - len(metas)
        fs.defects += res.defects
        progress.advance(len(batch), len(batch))

    def store_ready(ahead: int) -> None:
        """Commit the oldest batches until at most `ahead` are in flight (a failed one raises, stays queued)."""
        while len(pending) > ahead:
            batch, fut = pending[0]
            fetched = fut.result()
            pending.popleft()
            commit(batch, fetched)

    workers = fetch_workers() if len(uids) >= POOL_MIN_MESSAGES else 1
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(_fetch_pool(imap, cfg.parse, workers))
            stack.enter_context(store.background_checkpoints(conn))  # WAL checkpoints off the commit path
            submit: Callable[[list[int]], Future] = functools.partial(
                pool.submit, _fetch_in_worker, plan.name, status.uidvalidity, plan.gmail, cfg.sync.text_prefix_bytes)
        else:
            submit = functools.partial(_fetch_here, imap, plan.name, plan.gmail, cfg.sync.text_prefix_bytes, cfg.parse)
        try:
            for batch in batches:
                pending.append((batch, submit(batch)))
                store_ready(2 * workers - 2)
            store_ready(0)
        finally:
            # the connection is gone for good: keep what was fetched before the failure, in order
            with contextlib.suppress(Exception):
                while pending and pending[0][1].done() and pending[0][1].exception() is None:
                    batch, fut = pending.popleft()
                    commit(batch, fut.result())


# per message fetched: (uid, spam or trash, sent, Gmail message id); and its parse with its content hash (None:
# the writer computes it)
Fetched = tuple[list[tuple[int, bool, bool, "str | None"]], list[tuple["ParsedMessage", "str | None"]]]


def fetch_parsed(
    imap: ImapAccount, uids: list[int], folder: str, gmail: bool, prefix: int, cfg: ParseConfig, hashed: bool
) -> Fetched:
    """One batch fetched (headers and a bounded text prefix) and parsed; `hashed`: with content hashes."""
    msgs = imap.fetch_messages(folder, uids, gmail, prefix)
    parsed = parse_fetched(msgs, cfg)
    metas = [(m.uid, m.spam_or_trash, m.sent, m.gm_msgid) for m in msgs]
    return metas, [(pm, pm.content_hash() if hashed else None) for pm in parsed]


def _fetch_here(imap: ImapAccount, folder: str, gmail: bool, prefix: int, cfg: ParseConfig, uids: list[int]) -> Future:
    """fetch_parsed in this process, as a future already done (the writer hashes as it stores)."""
    fut: Future = Future()
    fut.set_result(fetch_parsed(imap, uids, folder, gmail, prefix, cfg, hashed=False))
    return fut


def fetch_workers() -> int:
    """Worker processes for a big first sync: one a core (the writer mostly waits on them), at most 4; none
    where processes cannot fork (a worker inherits the account and its credential, which do not pickle)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _relink(
    conn: sqlite3.Connection, cfg: Config, imap: ImapAccount, plan: FolderPlan, source_id: int, uidnext: int,
    uidvalidity: int, fs: FolderSummary,
) -> int:
    """UIDVALIDITY changed: list the folder again, fetch only a few header fields, link what we know."""
    from mailaudit.parse import parse_message

    log.warning("account '%s': %s has a new UIDVALIDITY; re-linking known messages by Message-ID",
                imap.account.name, plan.name)
    entries: list[tuple[str, ParsedMessage, int]] = []
    for batch in uid_batches(imap.all_uids(plan.name), RELINK_BATCH):
        for h in imap.fetch_headers(plan.name, batch):
            pm = parse_message(h.data + b"\r\n", cfg.parse, envelope_ts=h.internal_ts)
            entries.append((str(h.uid), pm, h.size))
    unknown = syncstore.save_imap_relink(conn, source_id, imap.account.name, plan.name, uidvalidity, entries,
                                     plan.sent, uidnext)
    fs.relinked = len(entries) - len(unknown)
    cursor = syncstore.load_imap_cursor(conn, imap.account.name, plan.name)
    return cursor.last_uid if cursor else 0


def parse_fetched(msgs: list[ImapMessage], cfg: ParseConfig) -> list[ParsedMessage]:
    """Fetched (possibly truncated) messages -> ParsedMessage, with the server's size, date and Gmail ids."""
    from mailaudit.parse import parse_message

    out: list[ParsedMessage] = []
    for m in msgs:
        pm = parse_message(m.data, cfg, envelope_ts=m.internal_ts)
        pm.size = m.size
        if m.truncated:
            pm.defects = [d for d in pm.defects if d not in _TRUNCATION_DEFECTS]
        if m.attachments is not None:
            has, names = m.attachments
            pm.has_attachment = pm.has_attachment or has
            pm.attachment_names = (pm.attachment_names + [n for n in names if n not in pm.attachment_names])[:20]
        if m.gm_thrid:
            pm.gm_thrid = m.gm_thrid
        if m.gm_labels:
            pm.gm_labels = list(m.gm_labels)
        out.append(pm)
    return out


_WORKER: tuple[ImapAccount, ParseConfig] | None = None  # in a fetch worker: its own connection and parse config


@contextlib.contextmanager
def _fetch_pool(imap: ImapAccount, cfg: ParseConfig, workers: int) -> Iterator[ProcessPoolExecutor]:
    """Forked workers that fetch and parse: the IMAP response lexer is pure Python, as is the parser, and in
    the writer they left every core but one idle. Each worker logs in with the credential already fetched."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(imap.worker_copy(), cfg))
    try:
        pool.submit(int).result()  # fork every worker now, before the writer starts its checkpoint thread
        yield pool
    except BaseException:
        workers_now = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers_now:  # a worker may be waiting out a backoff: the writer has given up already
            proc.terminate()
        raise
    pool.shutdown(wait=True)


def _init_worker(imap: ImapAccount, cfg: ParseConfig) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if sys.platform.startswith("linux"):
        import ctypes

        # die with the parent, even when it is killed with SIGKILL
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    _WORKER = (imap, cfg)
    import multiprocessing.util

    multiprocessing.util.Finalize(None, imap.close, exitpriority=10)  # LOGOUT when the pool shuts down


def _fetch_in_worker(folder: str, uidvalidity: int, gmail: bool, prefix: int, uids: list[int]) -> Fetched:
    """In a worker: fetch and parse one batch. A folder whose UIDVALIDITY is no longer the one the writer's cursor
    has raises UidValidityChanged, as it would in the writer."""
    assert _WORKER is not None
    imap, cfg = _WORKER
    imap.expect_uidvalidity(folder, uidvalidity)
    return fetch_parsed(imap, uids, folder, gmail, prefix, cfg, hashed=True)
