"""IMAP sync against a real Dovecot: first, no-op and incremental runs, UIDVALIDITY, restarts, kill -9, errors."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mailaudit.sync
from mailaudit.config import Config, load_config, parse_config
from mailaudit.errors import AuthError, ConfigError, SourceUnavailableError
from mailaudit.store import open_store
from mailaudit.sync import sync_accounts

from conftest import run_cli
from dovecot import Dovecot, dovecot  # noqa: F401 - the fixture
from mailgen import msg, rfc_date

ME = "Pat Morgan <pat@example.com>"
ROOT = Path(__file__).resolve().parents[1]


def received(n: int, start: int = 0, body: str = "Hello Pat, here is what I promised.") -> list[bytes]:
    return [
        msg(frm=f"Person {i % 37} <p{i % 37}@example.org>", to=ME, subject=f"Topic {i}",
            body=f"{body} Number {i}.\n", date=rfc_date(2026, 1 + i % 4, 1 + i % 28, i % 24),
            message_id=f"<in{i}@example.org>")
        for i in range(start, start + n)
    ]


def sent(n: int, start: int = 0) -> list[bytes]:
    return [
        msg(frm=ME, to=f"Person {i % 37} <p{i % 37}@example.org>", subject=f"Re: Topic {i}",
            body=f"Thanks, got it ({i}).\n", date=rfc_date(2026, 2, 1 + i % 28, 12), message_id=f"<out{i}@example.com>",
            extra={"In-Reply-To": f"<in{i}@example.org>"})
        for i in range(start, start + n)
    ]


def write_config(d: Dovecot, path: Path, batch: int = 100, **account: object) -> Path:
    path.write_text(f"[sync]\nbatch_size = {batch}\nreconnect_attempts = 5\nmax_backoff_seconds = 2\n\n"
                    + d.toml(**account))
    path.chmod(0o600)
    return path


def config(d: Dovecot, tmp_path: Path, batch: int = 100, **account: object) -> Config:
    return load_config(str(write_config(d, tmp_path / "config.toml", batch, **account)))


def q(conn: sqlite3.Connection, sql: str, *args: object) -> int:
    return conn.execute(sql, args).fetchone()[0]


def wait_logouts(d: Dovecot, n: int) -> None:
    """Dovecot logs a session's counters when it ends, a moment after the client is gone: wait for n."""
    deadline = time.monotonic() + 5
    while len(session_lines(d)) < n and time.monotonic() < deadline:
        time.sleep(0.02)


def session_lines(d: Dovecot) -> list[str]:
    return [ln for ln in d.log_text().splitlines() if "imap(" in ln and "Disconnected" in ln]


# --- the main path ------------------------------------------------------------------------------------------


def test_first_sync_then_no_op_then_new_mail(dovecot, tmp_path, conn):  # noqa: F811
    d = dovecot
    d.deliver("INBOX", received(250))
    d.deliver("Sent", sent(40), seen=True)
    cfg = config(d, tmp_path)
    s = sync_accounts(conn, cfg)
    assert [(f.folder, f.new) for f in s.folders] == [("INBOX", 250), ("Sent", 40)]
    assert q(conn, "SELECT count(*) FROM messages") == 290
    assert q(conn, "SELECT count(*) FROM messages WHERE direction='sent'") == 40
    assert s.me == ["pat@example.com"]  # inferred from the IMAP Sent folder
    assert q(conn, "SELECT count(*) FROM imap_folders WHERE last_uid > 0 AND uidvalidity IS NOT NULL") == 2
    # a reply threads with the message it answers
    assert q(conn, "SELECT count(DISTINCT thread_id) FROM messages WHERE message_id IN ('in3@example.org',"
                   " 'out3@example.com')") == 1

    wait_logouts(d, 1)
    s = sync_accounts(conn, cfg)
    assert all(f.unchanged for f in s.folders) and s.total("fetched") == 0
    wait_logouts(d, 2)
    noop = session_lines(d)[-1]
    # login, capabilities, LIST, one STATUS per folder, logout: no SELECT, no FETCH
    assert "hdr_count=0" in noop and "body_count=0" in noop, noop
    assert int(noop.split(" in=")[1].split()[0]) < 400, noop

    d.deliver("INBOX", received(7, start=250))
    s = sync_accounts(conn, cfg)
    by = {f.folder: f for f in s.folders}
    assert by["INBOX"].new == 7 and by["INBOX"].fetched == 7 and by["Sent"].unchanged
    assert q(conn, "SELECT count(*) FROM messages") == 297


def test_message_in_inbox_and_sent_is_stored_once_as_sent(dovecot, tmp_path, conn):  # noqa: F811
    d = dovecot
    to_self = msg(frm=ME, to=f"{ME}, Ann <ann@example.org>", subject="Minutes", message_id="<self@example.com>")
    d.deliver("INBOX", [*received(3), to_self])
    d.deliver("Sent", [to_self, *sent(2)], seen=True)
    s = sync_accounts(conn, config(d, tmp_path))
    assert s.total("new") == 6 and s.total("duplicates") == 1
    row = conn.execute("SELECT count(*), max(sent_hint), max(direction) FROM messages "
                       "WHERE message_id='self@example.com'").fetchone()
    assert row == (1, 1, "sent")
    assert q(conn, "SELECT count(*) FROM locations l JOIN messages m ON m.id=l.message "
                   "WHERE m.message_id='self@example.com'") == 2


def test_sync_never_sets_seen_and_fetches_a_bounded_prefix(dovecot, tmp_path, conn):  # noqa: F811
    d = dovecot
    big = os.urandom(3 * 1024 * 1024)
    import base64

    b64 = base64.encodebytes(big).replace(b"\n", b"\r\n")
    raw = (b"From: Ann <ann@example.org>\r\nTo: Pat <pat@example.com>\r\nSubject: the deck\r\n"
           b"Date: Mon, 04 May 2026 10:00:00 +0000\r\nMessage-ID: <deck@example.org>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
           b"Here is the deck, Pat.\r\n--XX\r\nContent-Type: application/pdf; name=deck.pdf\r\n"
           b"Content-Disposition: attachment; filename=deck.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b64 + b"--XX\r\nContent-Type: text/csv; name=\"=?utf-8?q?Zahlen_f=C3=BCr_Mai.csv?=\"\r\n"
           b"Content-Disposition: attachment\r\n\r\na,b\r\n1,2\r\n--XX--\r\n")
    d.deliver("INBOX", [raw, *received(3)])
    cfg = config(d, tmp_path)
    sync_accounts(conn, cfg)
    row = conn.execute("SELECT size, has_attachment, attachment_names, defects, body_text FROM messages JOIN texts "
                       "ON message=id WHERE message_id='deck@example.org'").fetchone()
    assert row[0] == len(raw)  # the server's RFC822.SIZE, not the bytes we fetched
    assert row[1] == 1 and row[3] == "" and "Here is the deck" in row[4]
    assert row[2] == "deck.pdf\nZahlen für Mai.csv"  # the second one lies past the prefix: from BODYSTRUCTURE
    wait_logouts(d, 1)
    body_bytes = sum(int(x.split("body_bytes=")[1].split()[0]) for x in session_lines(d))
    assert body_bytes < 4 * (cfg.sync.text_prefix_bytes + 2000)  # never the 4 MB attachment
    admin = d.admin()
    admin.select_folder("INBOX", readonly=True)
    flags = admin.get_flags(admin.search(["ALL"]))
    admin.logout()
    assert all(b"\\Seen" not in f for f in flags.values())


def test_since_limits_the_first_sync(dovecot, tmp_path, conn):  # noqa: F811
    d = dovecot
    admin = d.admin()
    old = datetime(2019, 3, 1, tzinfo=UTC)
    for raw in received(3):
        admin.append("INBOX", raw, msg_time=old)
    for raw in received(2, start=3):
        admin.append("INBOX", raw, msg_time=datetime.now(UTC))
    admin.logout()
    s = sync_accounts(conn, config(d, tmp_path, since="2 years"))
    assert s.total("new") == 2


def test_configured_folders_are_added(dovecot, tmp_path, conn):  # noqa: F811
    d = dovecot
    d.deliver("INBOX", received(2))
    d.deliver("Projects/Acme", received(3, start=10))
    s = sync_accounts(conn, config(d, tmp_path, folders=["Projects/Acme"]))
    assert [(f.folder, f.new) for f in s.folders] == [("INBOX", 2), ("Projects/Acme", 3)]


# --- UIDVALIDITY --------------------------------------------------------------------------------------------


def recreate_folder(d: Dovecot, folder: str, extra: list[bytes]) -> tuple[int, int]:
    """Delete the folder and create it again with the same messages (plus `extra`): a new UIDVALIDITY."""
    admin = d.admin()
    old = admin.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    admin.select_folder(folder, readonly=True)
    saved = admin.fetch(admin.search(["ALL"]), ["BODY.PEEK[]", "INTERNALDATE"])
    admin.unselect_folder()
    admin.delete_folder(folder)
    admin.create_folder(folder)
    for _uid, data in sorted(saved.items()):
        admin.append(folder, data[b"BODY[]"], flags=(b"\\Seen",), msg_time=data[b"INTERNALDATE"])
    for raw in extra:
        admin.append(folder, raw, flags=(b"\\Seen",))
    new = admin.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    admin.logout()
    return old, new


def test_uidvalidity_change_relinks_without_downloading_again(dovecot, tmp_path, conn):  # noqa: F811
    d = dovecot
    no_id = msg(frm=ME, to="Ann <ann@example.org>", subject="no id here", message_id=None, body="Plain words.\n")
    d.deliver("INBOX", received(30))
    d.deliver("Sent", [*sent(60), no_id], seen=True)
    cfg = config(d, tmp_path)
    sync_accounts(conn, cfg)
    assert q(conn, "SELECT count(*) FROM messages") == 91
    old, new = recreate_folder(d, "Sent", extra=sent(2, start=100))
    assert old != new
    wait_logouts(d, 2)
    sessions = len(session_lines(d))
    s = sync_accounts(conn, cfg)
    by = {f.folder: f for f in s.folders}
    assert by["Sent"].relinked == 61 and by["Sent"].new == 2 and by["Sent"].fetched == 2
    assert by["INBOX"].unchanged
    wait_logouts(d, 3)
    (line,) = session_lines(d)[sessions:]
    assert "body_count=2 " in line, line  # Dovecot's own count: only the two new bodies were downloaded
    assert q(conn, "SELECT count(*) FROM messages") == 93
    sent_src = q(conn, "SELECT id FROM sources WHERE key='imap:test/Sent'")
    assert q(conn, "SELECT count(*) FROM locations WHERE source=?", sent_src) == 63
    assert q(conn, "SELECT uidvalidity FROM imap_folders WHERE folder='Sent'") == new
    # and the next run is a no-op again
    assert all(f.unchanged for f in sync_accounts(conn, cfg).folders)


# --- resilience ---------------------------------------------------------------------------------------------


class RestartAfterFirstBatch:
    """A Progress that stops Dovecot after the first stored batch and starts it again 1.5 s later."""

    def __init__(self, d: Dovecot) -> None:
        self.d = d
        self.done = False
        self.timer: threading.Timer | None = None

    def begin(self, label: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, amount: int, items: int = 0) -> None:
        if not self.done:
            self.done = True
            self.d.stop()
            self.timer = threading.Timer(1.5, self.d.start)
            self.timer.start()

    def note(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


@pytest.fixture(params=["writer", "workers"])
def fetch_mode(request, monkeypatch) -> str:
    """A sync fetched by the writer itself, or (as a big first sync is) by two worker processes, each on its own
    connection; here even a small mailbox takes the workers' path."""
    if request.param == "workers":
        monkeypatch.setattr(mailaudit.sync, "POOL_MIN_MESSAGES", 1)
        monkeypatch.setattr(mailaudit.sync, "fetch_workers", lambda: 2)
    return request.param


def logins(d: Dovecot) -> int:
    return d.log_text().count("Login: user=<")


def test_workers_store_exactly_what_the_writer_stores(dovecot, tmp_path, monkeypatch):  # noqa: F811
    d = dovecot
    d.deliver("INBOX", received(300, body="Hello Pat, here is the deck. Thanks so much for the intro!"))
    d.deliver("Sent", sent(40), seen=True)
    cols = "message_id, direction, from_addr, subject, date_ts, content_hash, own_text, body_text, size"
    rows = {}
    for mode in ("writer", "workers"):
        if mode == "workers":
            monkeypatch.setattr(mailaudit.sync, "POOL_MIN_MESSAGES", 1)
            monkeypatch.setattr(mailaudit.sync, "fetch_workers", lambda: 2)
        before = logins(d)
        c = open_store(tmp_path / f"{mode}.db")
        s = sync_accounts(c, config(d, tmp_path, batch=23))
        assert s.total("new") == 340
        rows[mode] = sorted(c.execute(f"SELECT {cols} FROM messages JOIN texts ON texts.message = messages.id"))
        assert q(c, "SELECT count(*) FROM messages WHERE thread_id IS NULL") == 0
        assert q(c, "SELECT group_concat(last_uid) FROM imap_folders ORDER BY folder") in ("300,40", "40,300")
        c.close()
        wait_logouts(d, len(session_lines(d)) + 1)
        assert logins(d) - before == (1 if mode == "writer" else 5)  # the writer, then 2 workers a folder
    assert rows["workers"] == rows["writer"] and len(rows["writer"]) == 340


def test_server_restart_mid_sync_reconnects_and_finishes(dovecot, tmp_path, conn, caplog, fetch_mode):  # noqa: F811
    d = dovecot
    d.deliver("INBOX", received(1200))
    cfg = config(d, tmp_path, batch=100)
    progress = RestartAfterFirstBatch(d)
    with caplog.at_level(logging.WARNING, logger="mailaudit"):
        s = sync_accounts(conn, cfg, progress=progress)
    progress.timer.join()
    assert progress.done
    assert s.total("new") == 1200 and q(conn, "SELECT count(*) FROM messages") == 1200
    assert q(conn, "SELECT count(*) FROM locations") == 1200
    if fetch_mode == "writer":  # a worker logs its reconnects in its own process
        assert any("reconnecting" in r.getMessage() for r in caplog.records)
    else:
        assert logins(d) >= 4  # the writer and 2 workers, then the workers again after the restart


def test_connection_never_back_is_one_error_and_keeps_committed_batches(dovecot, tmp_path, conn, fetch_mode):  # noqa: F811
    d = dovecot
    d.deliver("INBOX", received(400))
    cfg = parse_config(tomllib.loads(
        "[sync]\nbatch_size = 100\nreconnect_attempts = 2\nmax_backoff_seconds = 1\n" + d.toml()))

    class StopForGood(RestartAfterFirstBatch):
        def advance(self, amount: int, items: int = 0) -> None:
            if not self.done:
                self.done = True
                self.d.stop()

    with pytest.raises(SourceUnavailableError, match="account 'test': lost the connection"):
        sync_accounts(conn, cfg, progress=StopForGood(d))
    stored = q(conn, "SELECT count(*) FROM messages")
    assert 100 <= stored < 400
    assert q(conn, "SELECT last_uid FROM imap_folders") == stored  # the cursor matches what was stored
    d.start()
    sync_accounts(conn, cfg)
    assert q(conn, "SELECT count(*) FROM messages") == 400


def test_interrupted_after_the_last_batch_is_settled_by_the_next_run(dovecot, tmp_path, conn):  # noqa: F811
    dovecot.deliver("INBOX", received(150))
    cfg = config(dovecot, tmp_path, batch=100)

    class CtrlCAtTheEnd(RestartAfterFirstBatch):
        def advance(self, amount: int, items: int = 0) -> None:
            if self.done:
                raise KeyboardInterrupt
            self.done = True

    with pytest.raises(KeyboardInterrupt):
        sync_accounts(conn, cfg, progress=CtrlCAtTheEnd(dovecot))
    assert q(conn, "SELECT count(*) FROM messages") == 150  # both batches were committed before Ctrl-C
    assert q(conn, "SELECT count(*) FROM messages WHERE thread_id IS NULL") == 150
    s = sync_accounts(conn, cfg)
    assert s.total("new") == 0 and s.threads > 0
    assert q(conn, "SELECT count(*) FROM messages WHERE thread_id IS NULL") == 0


def test_kill_9_mid_sync_then_rerun_is_exact(dovecot, tmp_path):  # noqa: F811
    d = dovecot
    n = 3000
    d.deliver("INBOX", received(n, body="Hello Pat, " + "a few more words to parse. " * 40))
    d.deliver("Sent", sent(50), seen=True)
    cfgfile = write_config(d, tmp_path / "config.toml", batch=100)
    db = tmp_path / "kill.db"
    open_store(db).close()
    cmd = [sys.executable, "-m", "mailaudit", "--db", str(db), "--config", str(cfgfile), "--quiet", "sync"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watch = sqlite3.connect(db, timeout=30)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        row = watch.execute("SELECT last_uid FROM imap_folders WHERE folder='INBOX'").fetchone()
        if row and row[0] >= 300:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"sync ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = watch.execute("SELECT count(*) FROM messages").fetchone()[0]
    cursor = watch.execute("SELECT last_uid FROM imap_folders WHERE folder='INBOX'").fetchone()[0]
    assert 0 < stored < n + 50 and cursor == stored  # the cursor and the batches moved together
    time.sleep(0.3)
    import psutil

    orphans = [p for p in psutil.process_iter(["cmdline"]) if str(db) in " ".join(p.info["cmdline"] or [])]
    assert not orphans, "fetch workers outlived the killed sync"

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    c = sqlite3.connect(db)
    assert q(c, "SELECT count(*) FROM messages") == n + 50
    assert q(c, "SELECT count(DISTINCT message_id) FROM messages") == n + 50
    assert q(c, "SELECT count(*) FROM locations") == n + 50
    assert q(c, "SELECT count(*) FROM imap_folders WHERE folder='INBOX' AND last_uid=?", n) == 1
    assert q(c, "SELECT count(*) FROM messages WHERE thread_id IS NULL") == 0
    c.close()
    watch.close()


# --- errors through the real command ------------------------------------------------------------------------


def cli_sync(d: Dovecot, tmp_path: Path, *extra_args: str, **account: object) -> subprocess.CompletedProcess:
    cfgfile = write_config(d, tmp_path / "config.toml", **account)
    return run_cli("--db", str(tmp_path / "cli.db"), "--config", str(cfgfile), *extra_args, "sync")


def one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailaudit: error: account 'test'"), res.stderr
    return lines[0]


def test_cli_sync_ok_is_0(dovecot, tmp_path):  # noqa: F811
    dovecot.deliver("INBOX", received(3))
    res = cli_sync(dovecot, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "test/INBOX: 3 new" in res.stdout and "synced 3 new messages" in res.stdout


def test_wrong_password_is_exit_4(dovecot, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MAILAUDIT_TEST_PASSWORD", "not-the-password-Zq9")
    res = cli_sync(dovecot, tmp_path)
    assert res.returncode == 4
    line = one_error_line(res)
    assert "refused the login" in line and "not-the-password-Zq9" not in res.stderr + res.stdout


def test_missing_folder_is_exit_5(dovecot, tmp_path):  # noqa: F811
    res = cli_sync(dovecot, tmp_path, folders=["Archive/2019"])
    assert res.returncode == 5
    assert "folder Archive/2019 not found" in one_error_line(res)


def test_unreachable_host_is_exit_5(dovecot, tmp_path):  # noqa: F811
    from dovecot import free_port

    res = cli_sync(dovecot, tmp_path, port=free_port())
    assert res.returncode == 5
    assert "refused; check host and port" in one_error_line(res)


def test_untrusted_certificate_is_exit_5(dovecot, tmp_path):  # noqa: F811
    cfgfile = tmp_path / "config.toml"
    cfgfile.write_text(dovecot.toml().replace(f'tls_ca_file = "{dovecot.ca_file}"\n', ""))
    cfgfile.chmod(0o600)
    res = run_cli("--db", str(tmp_path / "cli.db"), "--config", str(cfgfile), "sync")
    assert res.returncode == 5
    assert "certificate" in one_error_line(res) and "tls_ca_file" in res.stderr


def test_plaintext_without_consent_is_exit_3(dovecot, tmp_path):  # noqa: F811
    res = cli_sync(dovecot, tmp_path, port=dovecot.plain_port, security="none")
    assert res.returncode == 3
    assert "allow_plaintext = true" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_one_account_failing_of_two_is_partial_exit_8(dovecot, tmp_path):  # noqa: F811
    from dovecot import free_port

    dovecot.deliver("INBOX", received(2))
    cfgfile = tmp_path / "config.toml"
    cfgfile.write_text(dovecot.toml() + "\n" + dovecot.toml(name="down", port=free_port()))
    cfgfile.chmod(0o600)
    res = run_cli("--db", str(tmp_path / "cli.db"), "--config", str(cfgfile), "sync")
    assert res.returncode == 8, res.stderr
    assert "synced 2 new messages" in res.stdout and "account 'down'" in res.stderr


def test_silent_server_times_out_with_one_error(dovecot, tmp_path):  # noqa: F811
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        cfgfile = tmp_path / "config.toml"
        cfgfile.write_text("[sync]\ntimeout_seconds = 1\n\n" + dovecot.toml(port=silent.getsockname()[1]))
        cfgfile.chmod(0o600)
        t = time.monotonic()
        res = run_cli("--db", str(tmp_path / "cli.db"), "--config", str(cfgfile), "sync")
    assert res.returncode == 5 and time.monotonic() - t < 30
    assert "no answer from 127.0.0.1" in one_error_line(res)


def test_auth_for_an_unknown_account_is_exit_3(dovecot, tmp_path):  # noqa: F811
    cfgfile = write_config(dovecot, tmp_path / "config.toml")
    res = run_cli("--config", str(cfgfile), "auth", "nope")
    assert res.returncode == 3 and "no account named 'nope' (configured: test)" in res.stderr


def test_two_accounts_one_store_identity_spans_both(dovecot, tmp_path, conn, monkeypatch):  # noqa: F811
    d = dovecot
    d.add_user("pat-personal", "An0ther-Secret-77")
    monkeypatch.setenv("PERSONAL_PW", "An0ther-Secret-77")
    d.deliver("INBOX", received(3))
    d.deliver("Sent", sent(4), seen=True)
    personal = [msg(frm="Pat M <pat.m@gmail.com>", to="Kim <kim@example.net>", subject=f"Dinner {i}",
                    message_id=f"<home{i}@gmail.com>", date=rfc_date(2026, 4, 1 + i)) for i in range(3)]
    d.deliver("Sent", personal, seen=True, user="pat-personal")
    d.deliver("INBOX", received(2, start=50), user="pat-personal")
    cfgfile = tmp_path / "config.toml"
    cfgfile.write_text(d.toml() + "\n" + d.toml(name="home", username="pat-personal", password_env="PERSONAL_PW"))
    cfgfile.chmod(0o600)
    s = sync_accounts(conn, load_config(str(cfgfile)))
    assert [f"{f.account}/{f.folder}" for f in s.folders] == ["test/INBOX", "test/Sent", "home/INBOX", "home/Sent"]
    assert s.me == ["pat@example.com", "patm@gmail.com"]  # gmail addresses lose their dots
    assert q(conn, "SELECT count(*) FROM messages WHERE direction='sent'") == 7
    assert s.total("new") == 12
    # one account can be synced alone
    d.deliver("INBOX", received(1, start=60), user="pat-personal")
    s = sync_accounts(conn, load_config(str(cfgfile)), ["home"])
    assert [f.account for f in s.folders] == ["home", "home"] and s.total("new") == 1


def test_starttls_and_allowed_plaintext_work(dovecot, tmp_path, conn):  # noqa: F811
    dovecot.deliver("INBOX", received(2))
    s = sync_accounts(conn, config(dovecot, tmp_path, port=dovecot.plain_port, security="starttls"))
    assert s.total("new") == 2
    dovecot.deliver("INBOX", received(1, start=5))
    s = sync_accounts(conn, config(dovecot, tmp_path, port=dovecot.plain_port, security="none",
                                   allow_plaintext=True))
    assert s.total("new") == 1


# --- secrets ------------------------------------------------------------------------------------------------


def test_credentials_never_reach_logs_or_store(dovecot, tmp_path, db_path, caplog):  # noqa: F811
    d = dovecot
    d.deliver("INBOX", received(5))
    d.deliver("Sent", sent(2), seen=True)
    conn = open_store(db_path)
    with caplog.at_level(logging.DEBUG):  # everything, imapclient's protocol log included
        logging.getLogger("imapclient").setLevel(logging.DEBUG)
        sync_accounts(conn, config(d, tmp_path))
    conn.close()
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "LOGIN" in text and "**REDACTED**" in text  # the protocol log was on, and redacted
    assert d.password not in text
    for f in tmp_path.parent.glob(f"{db_path.name}*"):
        assert d.password.encode() not in f.read_bytes()
    res = run_cli("--db", str(db_path), "--config", str(tmp_path / "config.toml"), "-vv", "sync")
    assert res.returncode == 0 and d.password not in res.stderr + res.stdout


def test_password_command_like_passcmd(dovecot, tmp_path, conn, monkeypatch):  # noqa: F811
    d = dovecot
    script = tmp_path / "pass.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\nsecond line ignored\\n' '{d.password}'\n")
    script.chmod(0o700)
    d.deliver("INBOX", received(2))
    monkeypatch.delenv("MAILAUDIT_TEST_PASSWORD")
    s = sync_accounts(conn, config(d, tmp_path, password_env="", password_command=[str(script)]))
    assert s.total("new") == 2
    script.write_text("#!/bin/sh\necho 'gpg: decryption failed' >&2\nexit 2\n")
    with pytest.raises(AuthError, match=r"password_command .* exited with status 2 \(gpg: decryption failed\)"):
        sync_accounts(conn, config(d, tmp_path, password_env="", password_command=[str(script)]))


def test_missing_password_env_is_an_auth_error(dovecot, tmp_path, conn, monkeypatch):  # noqa: F811
    monkeypatch.delenv("MAILAUDIT_TEST_PASSWORD")
    with pytest.raises(AuthError, match=r"\$MAILAUDIT_TEST_PASSWORD is not set"):
        sync_accounts(conn, config(dovecot, tmp_path))


class MemoryKeyring:
    """An in-memory keyring backend: headless test machines have no Secret Service to talk to."""

    priority = 1

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password


def test_keyring_password_stored_by_auth_then_used(dovecot, tmp_path, conn, monkeypatch):  # noqa: F811
    keyring = pytest.importorskip("keyring")
    from keyring.backend import KeyringBackend

    from mailaudit.secrets import authorise

    backend = type("Mem", (MemoryKeyring, KeyringBackend), {})()
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    monkeypatch.setattr(keyring, "get_password", backend.get_password)
    monkeypatch.setattr(keyring, "set_password", backend.set_password)
    cfg = config(dovecot, tmp_path, password_env="", password_keyring=True)
    with pytest.raises(AuthError, match="run `mailaudit auth test`"):
        sync_accounts(conn, cfg)
    said = authorise(cfg, "test", show_url=print, ask_password=lambda: dovecot.password)
    assert "system keyring" in said and dovecot.password not in said
    dovecot.deliver("INBOX", received(1))
    assert sync_accounts(conn, cfg).total("new") == 1


# --- OAuth2 token handling (the provider is a local HTTP endpoint: Google cannot be reached from tests) ------


class TokenEndpoint:
    """A local OAuth2 provider: POST /token (refresh_token 'good' works, anything else is invalid_grant) and
    GET /tokeninfo for Dovecot to check the access tokens it issued."""

    def __init__(self) -> None:
        import http.server
        import json
        import urllib.parse

        self.calls: list[dict[str, str]] = []
        self.issued: set[str] = set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                outer.calls.append(form)
                if form.get("refresh_token") == "good" or form.get("code") == "the-code":
                    token = f"at-{len(outer.calls)}"
                    outer.issued.add(token)
                    self.answer(200, {"access_token": token, "expires_in": 3600, "refresh_token": "good"})
                else:
                    self.answer(400, {"error": "invalid_grant"})

            def do_GET(self) -> None:  # noqa: N802
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if query.get("access_token") in outer.issued:
                    self.answer(200, {"email": "pat", "expires_in": 3000})
                else:
                    self.answer(400, {"error": "invalid_token"})

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_oauth2_flow_token_file_refresh_and_revocation(tmp_path, monkeypatch):
    import json
    import urllib.parse
    import urllib.request

    from mailaudit import secrets

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    endpoint = TokenEndpoint()
    try:
        cfg = parse_config({"accounts": [{
            "name": "gmail", "host": "imap.gmail.com", "username": "pat@gmail.com", "auth": "oauth2",
            "oauth2_client_id": "cid.apps.googleusercontent.com", "oauth2_token_url": endpoint.url,
            "oauth2_auth_url": "https://accounts.example/auth"}]})
        acct = cfg.accounts[0]
        with pytest.raises(AuthError, match="run `mailaudit auth gmail` once"):
            secrets.fetch_access_token(acct)

        def browser(url: str) -> None:  # the user signs in; the provider redirects to our loopback address
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
            assert query["code_challenge_method"] == "S256" and query["scope"] == "https://mail.google.com/"
            target = f"{query['redirect_uri']}?code=the-code&state={query['state']}"
            threading.Thread(target=lambda: urllib.request.urlopen(target, timeout=10).read(), daemon=True).start()

        said = secrets.authorise(cfg, "gmail", show_url=browser, ask_password=lambda: "")
        path = secrets.token_path(acct)
        assert str(path) in said and path.stat().st_mode & 0o777 == 0o600
        assert endpoint.calls[-1]["code_verifier"]  # PKCE
        assert secrets.fetch_access_token(acct) == "at-1"  # cached, no call
        assert len(endpoint.calls) == 1
        assert secrets.fetch_access_token(acct, now=time.time() + 7200) == "at-2"  # expired: refreshed
        assert endpoint.calls[-1]["grant_type"] == "refresh_token"
        assert path.stat().st_mode & 0o777 == 0o600

        data = json.loads(path.read_text())
        data["refresh_token"] = "revoked"
        path.write_text(json.dumps(data))
        with pytest.raises(AuthError, match="expired or was revoked; run `mailaudit auth gmail` again"):
            secrets.fetch_access_token(acct, force_refresh=True)
    finally:
        endpoint.close()


def test_xoauth2_login_refreshes_a_stale_token_and_revocation_is_exit_4(tmp_path, monkeypatch, conn):
    import json

    from mailaudit import secrets

    from dovecot import running_dovecot

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    endpoint = TokenEndpoint()
    try:
        with running_dovecot(tokeninfo_url=f"{endpoint.base}/tokeninfo?access_token=") as d:
            d.deliver("INBOX", received(3))
            cfgfile = tmp_path / "config.toml"
            cfgfile.write_text(d.toml(auth="oauth2", password_env="", oauth2_client_id="cid",
                                      oauth2_token_url=endpoint.url))
            cfgfile.chmod(0o600)
            cfg = load_config(str(cfgfile))
            path = secrets.token_path(cfg.accounts[0])
            path.parent.mkdir(parents=True)
            # as `mailaudit auth` left it, but the server no longer takes the cached access token
            path.write_text(json.dumps({"refresh_token": "good", "access_token": "stale",
                                        "expires_at": time.time() + 3000}))
            assert sync_accounts(conn, cfg).total("new") == 3
            assert [c["grant_type"] for c in endpoint.calls] == ["refresh_token"]
            assert json.loads(path.read_text())["access_token"] == "at-1"

            path.write_text(json.dumps({"refresh_token": "revoked", "access_token": "stale",
                                        "expires_at": time.time() + 3000}))
            res = run_cli("--db", str(tmp_path / "cli.db"), "--config", str(cfgfile), "sync")
            assert res.returncode == 4
            assert "expired or was revoked; run `mailaudit auth test` again" in one_error_line(res)
    finally:
        endpoint.close()


# --- config, docs, start-up cost ----------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "message"), [
    ({"security": "none"}, 'security = "none" sends the password in clear text'),
    ({"security": "tls"}, "security = 'tls'; use one of ssl, starttls, none"),
    ({"password": "hunter2"}, "a password never goes in the config file"),
    ({"password_env": ""}, "needs exactly one of password_command, password_env or password_keyring"),
    ({"password_command": "pass mail/work"}, "password_command = 'pass mail/work' is not a valid list"),
    ({"auth": "oauth2"}, "takes no password_env"),
    ({"auth": "oauth2", "password_env": ""}, "needs oauth2_client_id"),
    ({"since": "a while"}, "since = 'a while' is neither"),
    ({"name": "my work"}, "may only hold letters"),
    ({"port": 99999}, "is not a TCP port"),
    ({"hots": "x"}, "unknown key 'hots'"),
])
def test_bad_account_values_are_config_errors(table, message):
    base = {"name": "work", "host": "imap.example.com", "username": "pat", "password_env": "PW"}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({"accounts": [base | table]}, "c.toml")


def test_config_example_documents_every_account_key():
    from dataclasses import fields

    from mailaudit.config import AccountConfig

    text = (ROOT / "config.example.toml").read_text()
    for f in fields(AccountConfig):
        assert f"# {f.name} = " in text, f"{f.name} is not documented in config.example.toml"
    example = "\n".join(ln[2:] for ln in text.splitlines() if ln.startswith("# name = \"work\"") or False)
    assert example  # the commented example is there


def test_sync_path_imports_no_pandas_or_sklearn():
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mailaudit.cli, mailaudit.sync"],
                         capture_output=True, text=True, check=True)
    modules = {ln.split("|")[-1].strip().split(".")[0] for ln in res.stderr.splitlines() if "|" in ln}
    assert not modules & {"pandas", "sklearn", "skops", "numpy", "jinja2"}


def test_settling_only_affected_messages_threads_like_the_whole_store():
    """affected_messages: threading only what new mail can move gives what threading everything gives, over
    random mail with shared and missing references, Gmail thread ids and subject-only replies."""
    import random

    from mailaudit.threads import ThreadInput, ThreadKeys, affected_messages, build_threads

    checked = 0
    gms = (None,) * 12 + ("g1", "g2")
    for seed in range(60):
        rng = random.Random(seed)
        n = rng.randrange(20, 200)
        items = []
        for i in range(n):
            refs = [rng.choice((f"m{max(0, i - rng.randrange(1, 6))}", f"x{rng.randrange(n)}"))
                    for _ in range(rng.choice((0, 0, 1, 2)))]
            items.append(ThreadInput(
                id=i + 1, message_id=f"m{i}" if rng.random() < 0.95 else f"m{rng.randrange(n)}",
                in_reply_to=refs[-1] if refs else None, references=refs, norm_subject=f"s{rng.randrange(n // 2)}",
                date_ts=rng.choice((None, 10**9 + rng.randrange(10**7))), gm_thrid=rng.choice(gms),
                is_reply=rng.random() < 0.6, own_fp="", quote_fp="", from_addr=f"a{rng.randrange(5)}"))
        new = set(rng.sample(range(1, n + 1), rng.randrange(1, n // 8)))
        old_roots = build_threads([it for it in items if it.id not in new], 30)
        keys = [(it.id, it.message_id, it.in_reply_to, " ".join(it.references), it.norm_subject,
                 it.date_ts is not None, it.gm_thrid, old_roots.get(it.id)) for it in items]
        whole = build_threads(items, 30)
        unthreaded = [k for k in keys if k[7] is None]
        ids = affected_messages(ThreadKeys(len(keys), len(unthreaded), unthreaded.copy, keys.copy))
        if ids is None:
            continue
        part = build_threads([it for it in items if it.id in ids], 30)
        assert {**old_roots, **part} == whole, seed
        checked += 1
    assert checked >= 20


def test_sync_keeps_forgotten_contacts_out(dovecot, tmp_path, conn):  # noqa: F811
    from mailaudit.tombstones import forget_contact

    dovecot.deliver("INBOX", received(5))
    cfg = config(dovecot, tmp_path)
    sync_accounts(conn, cfg)
    forget_contact(conn, "p1@example.org")
    assert q(conn, "SELECT count(*) FROM messages WHERE from_addr='p1@example.org'") == 0
    dovecot.deliver("INBOX", received(40, start=5))
    s = sync_accounts(conn, cfg)
    assert q(conn, "SELECT count(*) FROM messages WHERE from_addr='p1@example.org'") == 0
    assert s.total("skipped") == 1 and s.total("new") == 39  # Person 1 wrote number 38 of the 40


def test_no_change_sync_path_imports_no_parser():
    """A sync that finds nothing new never parses nor starts workers: the email parser, zoning, html2text and
    multiprocessing stay unloaded."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mailaudit.cli, mailaudit.sync"],
                         capture_output=True, text=True, check=True)
    modules = {ln.split("|")[-1].strip() for ln in res.stderr.splitlines() if "|" in ln}
    assert not modules & {"mailaudit.parse", "mailaudit.zoning", "html2text", "mailaudit.ingest", "multiprocessing",
                          "concurrent.futures.process"}
