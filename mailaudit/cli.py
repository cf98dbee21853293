"""The command line: parse arguments, call one library function, print the result. The only module that
prints or exits."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from mailaudit import __version__
from mailaudit.config import Config, load_config
from mailaudit.errors import ExitStatus, MailauditError
from mailaudit.progress import Progress, SilentProgress

log = logging.getLogger("mailaudit")


@dataclass
class Ctx:
    config_path: str | None
    db: str | None
    verbose: int
    quiet: bool
    traceback: bool

    def config(self) -> Config:
        return load_config(self.config_path)

    def open(self, cfg: Config) -> sqlite3.Connection:
        from mailaudit.store import open_store

        return open_store(cfg.db_path(self.db))

    @contextmanager
    def writing(self, cfg: Config) -> Iterator[sqlite3.Connection]:
        """The store, opened under its lock: two writers never overlap."""
        from mailaudit.lock import store_lock

        with store_lock(cfg.db_path(self.db)), closing(self.open(cfg)) as conn:
            yield conn

    def progress(self) -> Progress:
        if self.quiet:
            return SilentProgress()
        if sys.stderr.isatty():
            return BarProgress()
        return LogProgress()


class BarProgress:
    """A tqdm bar on a terminal: bytes for the ETA, messages and their rate in the postfix."""

    def __init__(self) -> None:
        self.bar = None
        self.items = 0

    def begin(self, label: str, total: int | None, unit: str) -> None:
        from tqdm import tqdm

        self.items = 0
        self.bar = tqdm(total=total, unit=unit, unit_scale=True, desc=label, file=sys.stderr, leave=False)

    def advance(self, amount: int, items: int = 0) -> None:
        if self.bar is None:
            return
        self.items += items
        self.bar.update(amount)
        if items:
            rate = self.items / max(self.bar.format_dict["elapsed"], 1e-6)
            self.bar.set_postfix_str(f"{self.items} msgs, {rate:,.0f} msg/s", refresh=False)

    def note(self, text: str) -> None:
        log.debug(text)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogProgress:
    """Quiet one-line logs for cron: one per file and one per 10,000 messages."""

    EVERY = 10_000

    def __init__(self) -> None:
        self.items = 0
        self.label = ""

    def begin(self, label: str, total: int | None, unit: str) -> None:
        self.items, self.label = 0, label

    def advance(self, amount: int, items: int = 0) -> None:
        before = self.items // self.EVERY
        self.items += items
        if self.items // self.EVERY > before:
            log.info("%s: %d messages", self.label, self.items)

    def note(self, text: str) -> None:
        log.info("%s: %s", self.label, text)

    def end(self) -> None:
        pass


def _setup_logging(verbose: int, quiet: bool) -> None:
    # off a terminal (cron) progress arrives as INFO lines, so INFO is the default there
    base = logging.WARNING if sys.stderr.isatty() else logging.INFO
    level = logging.ERROR if quiet else {0: base, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mailaudit: %(message)s"))
    root = logging.getLogger("mailaudit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class LazyGroup(click.Group):
    """Commands from other modules are imported when invoked (click's lazy-loading recipe): a cron `sync` with
    nothing new starts without the run/classifier modules, whose imports were a tenth of its time."""

    LAZY = {name: "mailaudit.cli_acts" for name in ("classify", "label", "train", "evaluate", "forget")} | {
        name: "mailaudit.cli_run" for name in ("run", "demo", "schedule")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            return getattr(importlib.import_module(self.LAZY[name]), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="PATH",
    help="Config file (else $MAILAUDIT_CONFIG, else the platform config dir).",
)
@click.option("--db", metavar="PATH", help="Store file; overrides [store] path in the config.")
@click.option("-v", "--verbose", count=True, help="More log lines (-vv for debug).")
@click.option("--quiet", is_flag=True, help="Print nothing but errors and the final result.")
@click.option("--traceback", is_flag=True, help="Show the full stack on an error.")
@click.version_option(__version__, prog_name="mailaudit")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, db: str | None, verbose: int, quiet: bool, traceback: bool
) -> None:
    """Audit the give and take of your professional relationships, from your own mail."""
    _setup_logging(verbose, quiet)
    ctx.obj = Ctx(config_path, db, verbose, quiet, traceback)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.pass_obj
def import_cmd(obj: Ctx, paths: tuple[str, ...]) -> None:
    """Import mbox (.mbox.gz), Google Takeout, Maildir or .eml exports; directories are searched."""
    from mailaudit.ingest import import_paths

    cfg = obj.config()
    with obj.writing(cfg) as conn:
        s = import_paths(conn, list(paths), cfg, obj.progress())
    click.echo(
        f"imported {s.new} new messages ({s.duplicates} duplicates, {s.skipped} skipped, {s.defects} with defects) "
        f"from {s.sources} mailboxes ({s.unchanged} unchanged); {s.threads} threads"
    )


@cli.command()
@click.argument("accounts", nargs=-1, metavar="[ACCOUNT]...")
@click.pass_obj
def sync(obj: Ctx, accounts: tuple[str, ...]) -> int:
    """Pull what is new on the IMAP accounts of the config (all, or those named) into the store."""
    from mailaudit.sync import sync_accounts

    cfg = obj.config()
    with obj.writing(cfg) as conn:
        s = sync_accounts(conn, cfg, list(accounts) or None, obj.progress())
    for f in s.folders:
        if f.unchanged:
            click.echo(f"  {f.account}/{f.folder}: unchanged")
        else:
            click.echo(f"  {f.account}/{f.folder}: {f.new} new, {f.duplicates} duplicates, {f.relinked} re-linked, "
                       f"{f.skipped} skipped, {f.defects} with defects")
    click.echo(
        f"synced {s.total('new')} new messages ({s.total('relinked')} re-linked, {s.total('skipped')} skipped, "
        f"{s.total('defects')} with defects) from {len(s.folders)} folders of {s.accounts - len(s.failures)} "
        f"accounts" + (f"; {s.threads} threads" if s.threads else "")
    )
    for exc in s.failures:
        click.echo(f"mailaudit: error: {exc}", err=True)
    return ExitStatus.PARTIAL if s.failures else ExitStatus.OK


@cli.command()
@click.argument("account")
@click.option("--no-browser", is_flag=True, help="Only print the sign-in address; do not open a browser.")
@click.pass_obj
def auth(obj: Ctx, account: str, no_browser: bool) -> None:
    """Authorise ACCOUNT once: OAuth2 sign-in (Gmail), or store its password in the system keyring."""
    from mailaudit.secrets import authorise

    def show_url(url: str) -> None:
        click.echo(f"Open this address in a browser and allow access:\n\n  {url}\n", err=True)
        if not no_browser:
            import webbrowser

            webbrowser.open(url)

    def ask_password() -> str:
        return click.prompt(f"password for account '{account}'", hide_input=True, err=True)

    click.echo(authorise(obj.config(), account, show_url, ask_password))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """What the store holds: messages, threads, contacts, dates, sources, defects."""
    from mailaudit.store import load_status

    cfg = obj.config()
    with closing(obj.open(cfg)) as conn:
        st = load_status(conn)
    click.echo(json.dumps(st, indent=2) if as_json else _format_status(st))


def _format_status(st: dict) -> str:
    me = ", ".join(st["me"]) or "unknown (set [identity] addresses in the config)"
    lines = [
        f"messages  {st['messages']} ({st['sent']} sent, {st['received']} received, {st['bulk']} bulk)",
        f"threads   {st['threads']}",
        f"contacts  {st['contacts']}",
        f"defects   {st['defects']} messages stored with defects",
        f"dates     {st['first_date'] or '-'} .. {st['last_date'] or '-'}",
        f"me        {me}",
    ]
    if st["me_inferred"]:
        lines.append(f"          (inferred from sent folders: {', '.join(st['me_inferred'])})")
    lines.append("sources")
    for s in st["sources"]:
        done = "" if s["complete"] else "  (incomplete: import again to resume)"
        lines.append(f"  {s['messages']:>7}  {s['kind']:<7} {s['path']}{done}")
    return "\n".join(lines)


@cli.command()
@click.option(
    "--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
    help="Report date: the window is the days before it (default: now).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv", "html"]), default=None,
    help="Only this format, to stdout or --out: json: the full export; csv: the contact table; html: the report "
    "page. Default: all three into [report] dir.",
)
@click.option("--out", metavar="FILE", help="Write here (atomically, mode 0600) instead of to stdout.")
@click.option("--open", "open_page", is_flag=True, help="Open the HTML report in the browser once written.")
@click.option(
    "--redact", is_flag=True,
    help="Names and addresses as stable pseudonyms, no subjects, excerpts or Message-IDs: a report to share for "
    "help or review. Applies to every format.",
)
@click.pass_obj
def report(
    obj: Ctx, as_of: datetime | None, fmt: str | None, out: str | None, open_page: bool, redact: bool
) -> None:
    """Per contact and in both directions: status, flags with evidence, and metrics.

    Without --format and --out, writes mailaudit-YYYY-MM-DD.html, latest.html and the JSON and CSV exports
    into [report] dir (default ./reports), each 0600. With --redact every one of them is redacted.
    """
    from mailaudit.relations import as_of_from_date, status_counts
    from mailaudit.report import ReportInputs, ReportPage

    cfg = obj.config()
    if fmt is None and out:
        fmt = {".html": "html", ".htm": "html", ".csv": "csv"}.get(Path(out).suffix.lower(), "json")
    if open_page and (fmt not in (None, "html") or (fmt == "html" and not out)):
        raise click.UsageError("--open opens the HTML report: use it without --format, or with --format html --out")
    with obj.writing(cfg) as conn:  # it records this run for "what changed"
        if fmt in (None, "html"):
            from mailaudit.report import audit_report

            page = audit_report(conn, cfg, as_of_from_date(as_of))  # records the run for "what changed"
        else:
            from mailaudit.relations import audit_store

            page = ReportPage(audit_store(conn, cfg, as_of_from_date(as_of)).rel, ReportInputs())
        if redact:
            from mailaudit.redact import load_pseudonyms, redact_page

            page = redact_page(page, load_pseudonyms(conn, page.rel.me, cfg.identity.merge))
    counts = status_counts(page.rel)
    summary = f"{sum(counts.values())} contacts ({', '.join(f'{n} {s}' for s, n in counts.items())})"
    if redact:
        summary += ", redacted"
    if fmt is None:
        from mailaudit.report import write_report_set

        files = write_report_set(page, Path(cfg.report.dir).expanduser())
        click.echo(f"wrote {files.html} (and {files.latest.name}, {files.json.name}, {files.csv.name}): {summary}")
        written = files.html
    else:
        from mailaudit.export import render, render_html, write_file_atomic

        data = render_html(page.rel, page.inputs) if fmt == "html" else render(page.rel, fmt)
        if not out:
            click.echo(data.decode("utf-8"), nl=False)
            return
        written = Path(out).expanduser()
        write_file_atomic(written, data)
        click.echo(f"wrote {out}: {summary}")
    if open_page:
        import webbrowser

        webbrowser.open(written.resolve().as_uri())



def main() -> None:
    """Entry point: the one place that turns errors into a line and an exit status."""
    ctx_traceback = "--traceback" in sys.argv
    try:
        rc = cli.main(standalone_mode=False, prog_name="mailaudit")
    except click.exceptions.Abort:
        _die("interrupted; everything committed so far is kept, run the command again to resume",
             ExitStatus.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitStatus.USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except MailauditError as exc:
        if ctx_traceback:
            raise
        _die(str(exc), exc.status)
    except KeyboardInterrupt:
        _die("interrupted; everything committed so far is kept, run the command again to resume",
             ExitStatus.INTERRUPTED)
    except sqlite3.DatabaseError as exc:
        if ctx_traceback:
            raise
        _die(_store_problem(exc), ExitStatus.STORE)
    except Exception as exc:
        if ctx_traceback:
            raise
        _die(f"unexpected {type(exc).__name__}: {exc} (run again with --traceback and report it)", ExitStatus.ERROR)
    sys.exit(rc if isinstance(rc, int) else ExitStatus.OK)


def _store_problem(exc: sqlite3.DatabaseError) -> str:
    """SQLite's own words turned into what happened and what to do; every committed batch is kept."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "the store is busy: another mailaudit process is writing it; run again when it has finished"
    if "full" in text:
        return "the disk is full while writing the store; free some space and run again (nothing stored is lost)"
    if "malformed" in text or "not a database" in text:
        return "the store file is damaged; restore its backup (*.bak-v*) or move it aside and import again"
    return f"the store failed ({exc}); run again, or with --traceback to report it"


def _die(message: str, status: ExitStatus) -> None:
    click.echo(f"mailaudit: error: {message}", err=True)
    sys.exit(int(status))
