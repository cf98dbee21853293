"""The scheduled job end to end through the real command: summary line, idempotence, lock, exit statuses,
report delivery to a real SMTP server (aiosmtpd), schedule --print, and the demo."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from mailgen import msg, rfc_date, write_mbox

ME = "Pat Morgan <pat@example.com>"
SMTP_PASSWORD = "smtp-Secret-4417"


def _mailbox(tmp_path: Path) -> Path:
    raws = [msg(frm="Ann Lee <ann@example.com>", to=ME, subject="Coffee?", message_id="<a1@x>",
                body="Could you introduce me to someone at Acme? I'd really value an intro.\n",
                date=rfc_date(2026, 9, 1)),
            msg(frm=ME, to="Ann Lee <ann@example.com>", subject="Re: Coffee?", message_id="<a2@x>",
                body="Happy to, Ann.\n", date=rfc_date(2026, 9, 2), extra={"In-Reply-To": "<a1@x>"})]
    write_mbox(tmp_path / "export" / "Sent.mbox", raws[1:])
    return write_mbox(tmp_path / "export" / "inbox.mbox", raws[:1]).parent


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("MAILAUDIT_CONFIG", None)
    env.update(extra)
    return env


def test_run_imports_classifies_reports_and_is_idempotent(tmp_path):
    export = _mailbox(tmp_path)
    db, out = tmp_path / "s.db", tmp_path / "reports"
    args = ("--db", str(db), "run", "--no-sync", "--import", str(export), "--as-of", "2026-10-01",
            "--out-dir", str(out))
    first = run_cli(*args, env=_env(tmp_path))
    assert first.returncode == 0, first.stderr
    line = first.stdout.strip().splitlines()[-1]
    assert line.startswith("run: 2 new messages, 2 classified, 1 contacts")
    names = sorted(p.name for p in out.iterdir())
    day = "mailaudit-2026-10-01"
    assert names == ["latest.html", f"{day}.csv", f"{day}.html", f"{day}.json"]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in out.iterdir())
    report = json.loads((out / "mailaudit-2026-10-01.json").read_text())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = run_cli(*args, env=_env(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "run: 0 new messages, 0 classified, 1 contacts" in second.stdout
    assert json.loads((out / "mailaudit-2026-10-01.json").read_text()) == report
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after["mailaudit-2026-10-01.csv"] == before["mailaudit-2026-10-01.csv"]
    log = tmp_path / "state" / "mailaudit" / "log" / "mailaudit.log"
    logs = list((tmp_path / "state").rglob("mailaudit.log"))
    assert logs and (logs[0].stat().st_mode & 0o777) == 0o600, log
    assert "imported" in logs[0].read_text()


@pytest.mark.parametrize("command", [("run", "--no-sync"), ("sync",), ("report",), ("import", ".")])
def test_a_writer_while_the_lock_is_held_exits_7_at_once(tmp_path, command):
    from filelock import FileLock

    db = tmp_path / "s.db"
    with FileLock(str(db) + ".lock"):
        res = run_cli("--db", str(db), *command, env=_env(tmp_path))
    assert res.returncode == 7
    assert res.stderr.strip().splitlines()[-1].startswith("mailaudit: error: another mailaudit run holds")


def test_run_bad_import_is_6_and_missing_import_is_5(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    res = run_cli("--db", str(tmp_path / "s.db"), "run", "--no-sync", "--import", str(tmp_path / "notes.txt"),
                  env=_env(tmp_path))
    assert res.returncode == 6
    res = run_cli("--db", str(tmp_path / "s.db"), "run", "--no-sync", "--import", str(tmp_path / "gone"),
                  env=_env(tmp_path))
    assert res.returncode == 5


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that requires a login and keeps what it receives."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == SMTP_PASSWORD
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    # aiosmtpd's start() connects to its own port to check it is up, so port 0 cannot work: take a free port first
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def _email_config(tmp_path: Path, port: int) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[report.email]\n"
        'to = ["pat@example.com"]\nfrom = "mailaudit@example.com"\nhost = "127.0.0.1"\n'
        f'port = {port}\nsecurity = "none"\nallow_plaintext = true\nusername = "pat"\n'
        'password_env = "MAILAUDIT_TEST_SMTP"\n'
    )
    return cfg


def test_report_is_mailed_as_wellformed_mime_and_the_password_is_never_logged(tmp_path, smtp_server):
    port, received = smtp_server
    cfg = _email_config(tmp_path, port)
    export = _mailbox(tmp_path)
    res = run_cli("--config", str(cfg), "--db", str(tmp_path / "s.db"), "-vv", "run", "--no-sync",
                  "--import", str(export), "--as-of", "2026-10-01", "--out-dir", str(tmp_path / "r"),
                  env=_env(tmp_path, MAILAUDIT_TEST_SMTP=SMTP_PASSWORD))
    assert res.returncode == 0, res.stderr
    assert "mailed" in res.stdout
    assert len(received) == 1
    m = email.message_from_bytes(received[0], policy=email.policy.default)
    assert m["Subject"] == "mailaudit: your relationships as of 2026-10-01"
    assert m["Auto-Submitted"] == "auto-generated"
    html = m.get_body(("html",)).get_content()
    assert "Needs attention" in html and "<script" not in html.lower()
    attachments = list(m.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["mailaudit-2026-10-01.html"]
    assert b"<html" in attachments[0].get_content().encode() if isinstance(attachments[0].get_content(), str) \
        else b"<html" in attachments[0].get_content()
    everything = res.stdout + res.stderr + "".join(p.read_text() for p in (tmp_path / "state").rglob("*.log*"))
    assert SMTP_PASSWORD not in everything
    assert SMTP_PASSWORD.encode() not in (tmp_path / "s.db").read_bytes()


def test_failed_delivery_is_partial_8_but_the_report_is_written(tmp_path, smtp_server):
    port, received = smtp_server
    cfg = _email_config(tmp_path, port)
    res = run_cli("--config", str(cfg), "--db", str(tmp_path / "s.db"), "run", "--no-sync",
                  "--import", str(_mailbox(tmp_path)), "--out-dir", str(tmp_path / "r"),
                  env=_env(tmp_path, MAILAUDIT_TEST_SMTP="wrong-password"))
    assert res.returncode == 8, res.stderr
    assert "refused" in res.stdout
    assert received == []
    assert (tmp_path / "r" / "latest.html").exists()


def test_bad_config_value_is_3(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[report.email]\nto = "not-a-list"\n')
    res = run_cli("--config", str(cfg), "--db", str(tmp_path / "s.db"), "run", "--no-sync", env=_env(tmp_path))
    assert res.returncode == 3 and "report.email" in res.stderr


def test_schedule_print_gives_cron_and_systemd(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("")
    res = run_cli("--config", str(cfg), "schedule", "--print")
    assert res.returncode == 0
    cron = [ln for ln in res.stdout.splitlines() if ln.startswith("0 7 * * 1 ")]
    assert len(cron) == 1 and f"--config {cfg}" in cron[0] and cron[0].endswith("run")
    assert "OnCalendar=Mon *-*-* 07:00:00" in res.stdout and "ExecStart=" in res.stdout


def test_demo_writes_the_report_and_says_where(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mailaudit", "demo", "--out-dir", str(tmp_path / "out")],
                         capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr
    page = tmp_path / "out" / "demo.html"
    assert page.exists() and str(page) in res.stdout
    text = page.read_text()
    for status in ("bruised", "one_way", "drifting", "dormant", "healthy"):
        assert status in text


def test_config_example_documents_every_report_email_key():
    import dataclasses

    from mailaudit.config import EmailConfig

    text = (Path(__file__).resolve().parents[1] / "config.example.toml").read_text()
    section = text.split("# [report.email]\n", 1)[1]
    for f in dataclasses.fields(EmailConfig):
        key = {"sender": "from", "name": None}.get(f.name, f.name)
        if key:
            assert f"# {key} = " in section, f"[report.email] {key} is not documented in config.example.toml"
