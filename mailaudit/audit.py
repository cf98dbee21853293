"""The scheduled job: sync or import, classify, audit relationships, write the report, deliver it."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailaudit.config import Config
from mailaudit.errors import ExitStatus, MailauditError
from mailaudit.progress import Progress, SilentProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    accounts: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    as_of: datetime | None = None
    sync: bool = True
    report_dir: Path | None = None  # None: [report] dir
    model_dir: Path | None = None
    deliver: bool = True


@dataclass
class RunSummary:
    new_messages: int = 0
    classified: int = 0
    contacts: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    reports: list[Path] = field(default_factory=list)
    mailed: bool = False
    failures: list[MailauditError] = field(default_factory=list)
    stages_ok: int = 0

    @property
    def status(self) -> ExitStatus:
        """OK; PARTIAL when something failed but a report was still written; else the first failure's own."""
        if not self.failures:
            return ExitStatus.OK
        if self.reports:
            return ExitStatus.PARTIAL
        return self.failures[0].status

    def line(self) -> str:
        counts = ", ".join(f"{n} {s.replace('_', '-')}" for s, n in self.counts.items() if n)
        where = self.reports[0] if self.reports else "no report"
        failed = f"; {len(self.failures)} failed: " + "; ".join(str(f) for f in self.failures) if self.failures else ""
        mailed = ", mailed" if self.mailed else ""
        return (f"run: {self.new_messages} new messages, {self.classified} classified, {self.contacts} contacts "
                f"({counts or 'none'}); report {where}{mailed}{failed}")


def run_audit(conn: sqlite3.Connection, cfg: Config, opts: RunOptions, progress: Progress | None = None) -> RunSummary:
    """Every stage in order. An account that cannot be synced or a report that cannot be mailed is recorded
    and the rest goes on; bad imports, a bad model or a broken store stop the run (they raise)."""
    progress = progress or SilentProgress()
    summary = RunSummary()
    if opts.imports:
        from mailaudit.ingest import import_paths

        with _stage("import"):
            summary.new_messages += import_paths(conn, list(opts.imports), cfg, progress).new
    if opts.sync and cfg.accounts:
        with _stage("sync"):
            _sync(conn, cfg, opts, progress, summary)
    with _stage("classify"):
        _classify(conn, opts, progress, summary)
    rel = _report(conn, cfg, opts, summary)
    if opts.deliver and cfg.report_email.to:
        _deliver(rel, cfg, summary)
    return summary


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """One DEBUG line per stage with its wall time (bench/e2e.py reads these from `-vv`)."""
    start = time.perf_counter()
    log.debug("stage %s: started", name)
    yield
    log.debug("stage %s: done in %.2f s", name, time.perf_counter() - start)


def _sync(conn: sqlite3.Connection, cfg: Config, opts: RunOptions, progress: Progress, summary: RunSummary) -> None:
    from mailaudit.sync import sync_accounts

    try:
        res = sync_accounts(conn, cfg, list(opts.accounts) or None, progress)
    except MailauditError as exc:  # every account failed: the report still comes from what is stored
        log.warning("sync failed: %s", exc)
        summary.failures.append(exc)
        return
    summary.new_messages += res.total("new")
    for failure in res.failures:
        log.warning("sync failed: %s", failure)
    summary.failures.extend(res.failures)


def _classify(conn: sqlite3.Connection, opts: RunOptions, progress: Progress, summary: RunSummary) -> None:
    from mailaudit.acts import classify_store, current_model

    summary.classified = classify_store(conn, current_model(opts.model_dir), progress).predicted


def _report(conn: sqlite3.Connection, cfg: Config, opts: RunOptions, summary: RunSummary):  # noqa: ANN202
    from mailaudit.relations import as_of_from_date, status_counts
    from mailaudit.report import audit_report, write_report_set

    with _stage("audit"):
        page = audit_report(conn, cfg, as_of_from_date(opts.as_of))
    summary.counts = status_counts(page.rel)
    summary.contacts = sum(summary.counts.values())
    with _stage("write"):
        files = write_report_set(page, opts.report_dir or Path(cfg.report.dir).expanduser())
    summary.reports = [files.html, files.latest, files.json, files.csv]
    return page.rel


def _deliver(rel, cfg: Config, summary: RunSummary) -> None:  # noqa: ANN001
    from mailaudit import mailer
    from mailaudit.secrets import fetch_password

    email = cfg.report_email
    try:
        mailer.check_security(email.security, email.allow_plaintext)
        password = fetch_password(email) if email.username else ""  # type: ignore[arg-type]
        msg = mailer.build_message(mailer_summary(rel), email.sender or email.to[0], list(email.to),
                                   summary.reports[0] if summary.reports else None)
        mailer.send(msg, email.host, email.effective_port, email.security, email.username, password,
                    email.tls_ca_file)
        summary.mailed = True
    except MailauditError as exc:
        log.warning("delivery failed: %s", exc)
        summary.failures.append(exc)


def mailer_summary(rel):  # noqa: ANN001, ANN201
    """The few lines the mail carries: counts and the contacts that need attention, worst first."""
    from mailaudit.mailer import Summary
    from mailaudit.relations import status_counts

    attention = []
    for row in rel.contacts.itertuples(index=False):
        if row.status in ("bruised", "one_way", "drifting"):
            pairs = [f.split(":") for f in str(row.flags or "").split(";") if ":" in f]
            flags = ", ".join(f"{f.replace('_', ' ')} ({'by them' if by == 'them' else 'by you'})" for f, by in pairs)
            attention.append((row.name or "", row.contact, row.status, flags))
    return Summary(rel.as_of.strftime("%Y-%m-%d"), status_counts(rel), attention[:25], [])
