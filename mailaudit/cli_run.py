"""Commands of the scheduled job: run, demo, schedule (registered by cli.py)."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import tempfile
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailaudit.lock import store_lock

if TYPE_CHECKING:
    from mailaudit.cli import Ctx

log = logging.getLogger("mailaudit")
LOG_BYTES = 1_000_000
LOG_BACKUPS = 5


def _log_to_file() -> Path:
    """A rotating log in the platform state dir (0600 file, 0700 folder), beside stderr."""
    from mailaudit.config import state_dir

    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "mailaudit.log"
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    import logging.handlers  # only `run` logs to a file

    handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    if log.level > logging.INFO:
        for h in log.handlers:
            if h is not handler:
                h.setLevel(log.level)
        log.setLevel(logging.INFO)
    return path


@click.command()
@click.option("--account", "accounts", multiple=True, metavar="NAME", help="Only these accounts (repeatable).")
@click.option("--import", "imports", multiple=True, metavar="PATH", help="Import these exports first (repeatable).")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Report date (default: now).")
@click.option("--no-sync", is_flag=True, help="Do not sync the configured accounts.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Folder for the report files (default: [report] dir, ./reports).")
@click.option("--demo", "use_demo", is_flag=True, help="Run on the bundled sample mailbox (same as `mailaudit demo`).")
@click.pass_obj
def run(obj: Ctx, accounts: tuple[str, ...], imports: tuple[str, ...], as_of: datetime | None, no_sync: bool,
        out_dir: Path | None, use_demo: bool) -> int:
    """The weekly job: sync (or import), classify, audit, write the report, mail it; one summary line."""
    if use_demo:
        return _demo(obj, out_dir)
    from mailaudit.audit import RunOptions, run_audit

    cfg = obj.config()
    db = cfg.db_path(obj.db)
    logfile = _log_to_file()
    with store_lock(db), closing(obj.open(cfg)) as conn:
        opts = RunOptions(accounts, imports, as_of, not no_sync, out_dir)
        summary = run_audit(conn, cfg, opts, obj.progress())
    log.debug("log file: %s", logfile)
    click.echo(summary.line())
    return int(summary.status)


@click.command()
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Folder for demo.html (default: reports/).")
@click.pass_obj
def demo(obj: Ctx, out_dir: Path | None) -> int:
    """See mailaudit on the bundled sample mailbox (a throwaway store, no account needed)."""
    return _demo(obj, out_dir)


def _demo(obj: Ctx, out_dir: Path | None) -> int:
    from mailaudit.audit import RunOptions, run_audit
    from mailaudit.config import Config
    from mailaudit.sample import SAMPLE_AS_OF, sample_mailbox
    from mailaudit.store import open_store

    target = out_dir or Path("reports")
    with tempfile.TemporaryDirectory(prefix="mailaudit-demo-") as tmp:
        cfg = Config()
        with closing(open_store(Path(tmp) / "demo.db")) as conn:
            opts = RunOptions(imports=(str(sample_mailbox()),), as_of=SAMPLE_AS_OF, sync=False,
                              report_dir=Path(tmp) / "reports", deliver=False)
            summary = run_audit(conn, cfg, opts, obj.progress())
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        page = target / "demo.html"
        shutil.copyfile(summary.reports[0], page)
        page.chmod(0o600)
    click.echo(summary.line().replace(str(summary.reports[0]), str(page)))
    click.echo(f"open {page.resolve()} in a browser to see the report")
    return int(summary.status)


@click.command()
@click.option("--print", "do_print", is_flag=True, required=True, help="Print the crontab line and systemd units.")
@click.pass_obj
def schedule(obj: Ctx, do_print: bool) -> None:
    """Print a ready crontab line and a systemd user timer + service for the weekly run."""
    from mailaudit.config import find_config

    cfg_path = find_config(obj.config_path)
    exe = shlex.quote(sys.argv[0] if sys.argv[0].endswith("mailaudit") else "mailaudit")
    args = f" --config {shlex.quote(str(cfg_path.resolve()))}" if cfg_path else ""
    command = f"{exe}{args} --quiet run"
    click.echo("# crontab -e: every Monday at 07:00")
    click.echo(f"0 7 * * 1 {command}")
    click.echo("\n# ~/.config/systemd/user/mailaudit.service")
    click.echo(f"[Unit]\nDescription=mailaudit weekly relationship report\n\n[Service]\nType=oneshot\n"
               f"ExecStart={command}\n")
    click.echo("# ~/.config/systemd/user/mailaudit.timer  (then: systemctl --user enable --now mailaudit.timer)")
    click.echo("[Unit]\nDescription=Run mailaudit weekly\n\n[Timer]\nOnCalendar=Mon *-*-* 07:00:00\n"
               "Persistent=true\n\n[Install]\nWantedBy=timers.target")
