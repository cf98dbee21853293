"""Crashes and faults: kill -9 the importer and the IMAP syncer at random points, a full disk, two writers at once."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailaudit.config import Config, ImportConfig
from mailaudit.ingest import import_paths
from mailaudit.store import open_store
from mailaudit.threads import build_threads
from mailaudit.threadstore import load_thread_inputs

from conftest import run_cli
from dovecot import Dovecot, dovecot  # noqa: F401 - the fixture
from mailgen import msg, rfc_date, write_mbox

KILLS = 20


def snapshot(db: Path) -> tuple:
    """What must survive any crash: message keys, aliases, thread structure, directions, locations."""
    c = sqlite3.connect(db)
    messages = frozenset(c.execute("SELECT content_hash, direction FROM messages"))
    sql = "SELECT i.msgid, m.content_hash FROM message_ids i JOIN messages m ON m.id=i.message"
    aliases = frozenset(c.execute(sql))
    threads: dict[int, set[str]] = {}
    for h, t in c.execute("SELECT content_hash, thread_id FROM messages"):
        threads.setdefault(t, set()).add(h)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    c.close()
    return messages, aliases, frozenset(frozenset(v) for v in threads.values())


def _import(db: Path, paths: list[Path]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mailaudit", "--quiet", "--db", str(db), "import",
                             *map(str, paths)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_and_resume(tmp_path: Path, paths: list[Path], clean: tuple, seconds: float, kills: int) -> int:
    rng = random.Random(20261122)
    survived = 0
    for i in range(kills):
        db = tmp_path / f"k{i}.db"
        proc = _import(db, paths)
        time.sleep(rng.uniform(0.05, seconds))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        res = run_cli("--quiet", "--db", str(db), "import", *map(str, paths))
        assert res.returncode == 0, res.stderr
        assert snapshot(db) == clean, f"kill {i} left a different store"
        survived += 1
    return survived


def _clean(tmp_path: Path, paths: list[Path]) -> tuple[tuple, float]:
    t = time.perf_counter()
    res = run_cli("--quiet", "--db", str(tmp_path / "clean.db"), "import", *map(str, paths))
    assert res.returncode == 0, res.stderr
    return snapshot(tmp_path / "clean.db"), time.perf_counter() - t


def test_kill_9_importer_at_20_points_on_real_mail(corpora, tmp_path):
    paths = [corpora / "enron" / "allen-p" / "sent.mbox", corpora / "enron" / "beck-s" / "sent_items.mbox",
             corpora / "enron" / "beck-s" / "inbox.mbox"]
    clean, took = _clean(tmp_path, paths)
    assert _kill_and_resume(tmp_path, paths, clean, took, KILLS) == KILLS


def test_kill_9_importer_on_a_generated_mailbox(tmp_path):
    raws = [msg(frm=f"P{i % 40} <p{i % 40}@example.com>", subject=f"Re: topic {i % 300}", message_id=f"<g{i}@x>",
                body=f"Message {i} about topic {i % 300}.\n", date=rfc_date(2025, 1 + i % 12, 1 + i % 28, i % 24))
            for i in range(6000)]
    paths = [write_mbox(tmp_path / "big.mbox", raws)]
    clean, took = _clean(tmp_path, paths)
    assert _kill_and_resume(tmp_path, paths, clean, took, 5) == 5


def _sync_snapshot(db: Path) -> tuple:
    """snapshot() plus what only a sync keeps: each folder's UIDs and cursor."""
    c = sqlite3.connect(db)
    sql = "SELECT l.location, m.content_hash FROM locations l JOIN messages m ON m.id=l.message"
    uids = frozenset(c.execute(sql))
    cursors = frozenset(c.execute("SELECT folder, uidvalidity, last_uid FROM imap_folders"))
    unthreaded = c.execute("SELECT count(*) FROM messages WHERE thread_id IS NULL").fetchone()[0]
    c.close()
    return snapshot(db), uids, cursors, unthreaded


def _mailbox(d: Dovecot, later: bool) -> None:
    """500 messages in threads of six (References and In-Reply-To, or a subject only), some in both INBOX and
    Sent. `later`: the two thirds of them (replies into those threads) that arrive after a first sync."""
    me = "Pat Morgan <pat@example.com>"
    inbox, sent = [], []
    for i in range(500):
        if (i % 3 != 0) != later:
            continue
        person = f"Person {i % 23} <p{i % 23}@example.org>"
        group = [f"<c{j}@x>" for j in range(i - i % 6, i)]
        extra = {"In-Reply-To": group[-1], "References": " ".join(group[-3:])} if group and i % 4 != 3 else {}
        raw = msg(frm=me if i % 5 == 0 else person, to=person if i % 5 == 0 else me, subject=f"Re: plan {i // 6}",
                  body=f"Message {i} about plan {i // 6}.\n", message_id=f"<c{i}@x>", extra=extra,
                  date=rfc_date(2026, 1 + i // 200, 1 + i % 28, i % 24))
        (sent if i % 5 == 0 else inbox).append(raw)
        if i % 37 == 0:  # in both folders: stored once
            (inbox if i % 5 == 0 else sent).append(raw)
    d.deliver("INBOX", inbox)
    d.deliver("Sent", sent, seen=True)


def test_kill_9_syncer_at_20_points(dovecot, tmp_path):  # noqa: F811
    """A first sync, then new mail that joins its threads; the second sync is killed at 20 points and run
    again. Each store must equal the one an uninterrupted second sync gives (threaded only where new mail
    can change threads), and that one the store threaded whole."""
    cfgfile = tmp_path / "config.toml"
    cfgfile.write_text("[sync]\nbatch_size = 10\n\n" + dovecot.toml())
    cfgfile.chmod(0o600)
    args = ["--quiet", "--config", str(cfgfile)]
    _mailbox(dovecot, later=False)
    first = tmp_path / "first.db"
    assert run_cli(*args, "--db", str(first), "sync").returncode == 0
    _mailbox(dovecot, later=True)
    shutil.copy(first, tmp_path / "clean.db")
    proc, started = _sync(args, tmp_path / "clean.db")
    assert proc.wait(120) == 0, proc.stderr.read()
    took = time.perf_counter() - started
    clean = _sync_snapshot(tmp_path / "clean.db")
    assert clean[3] == 0 and len(clean[0][0]) == 500
    conn = open_store(tmp_path / "clean.db")
    whole = build_threads(load_thread_inputs(conn), Config().threads.subject_window_days)
    assert whole == dict(conn.execute("SELECT id, thread_id FROM messages"))
    conn.close()
    before = sqlite3.connect(first).execute("SELECT count(*) FROM messages").fetchone()[0]
    rng = random.Random(20261123)
    stages: list[str] = []
    for i in range(KILLS):
        db = tmp_path / f"s{i}.db"
        shutil.copy(first, db)
        proc, _ = _sync(args, db)
        time.sleep(rng.uniform(0, 0.6 * took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stages.append(_stage(db, before))
        res = run_cli(*args, "--db", str(db), "sync")
        assert res.returncode == 0, res.stderr
        assert _sync_snapshot(db) == clean, f"kill {i} ({stages[-1]}) left a different store"
    assert len(stages) == KILLS
    assert stages.count("mid-sync") >= 5, stages  # a good share of the kills land while batches are stored


def _sync(args: list[str], db: Path) -> tuple[subprocess.Popen, float]:
    """Start `mailaudit sync`; return once it has opened the store (SQLite makes its -wal file), or ended, with
    that moment: Python's start-up is not worth killing."""
    proc = subprocess.Popen([sys.executable, "-m", "mailaudit", *args, "--db", str(db), "sync"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wal = Path(f"{db}-wal")
    deadline = time.monotonic() + 60
    while not wal.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    return proc, time.perf_counter()


def _stage(db: Path, before: int) -> str:
    """Where a kill landed: before a new message was stored, while batches were stored or settled, or after."""
    c = sqlite3.connect(db)
    stored = c.execute("SELECT count(*) FROM messages").fetchone()[0]
    unthreaded = c.execute("SELECT count(*) FROM messages WHERE thread_id IS NULL").fetchone()[0]
    c.close()
    return "start" if stored == before else "mid-sync" if unthreaded else "done"


def test_disk_full_is_one_line_and_the_store_stays_consistent(tmp_path):
    """SQLite's max_page_count stands in for a full disk: the same SQLITE_FULL error, on demand."""
    write_mbox(tmp_path / "a.mbox", [msg(message_id=f"<d{i}@x>", subject=f"s{i}", body="x" * 3000 + f"{i}\n")
                                     for i in range(400)])
    db = tmp_path / "s.db"
    conn = open_store(db)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 400}")
    cfg = Config(import_=ImportConfig(batch_size=50))
    with pytest.raises(sqlite3.OperationalError, match="full"):
        import_paths(conn, [str(tmp_path / "a.mbox")], cfg)
    stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert 0 < stored < 400 and stored % 50 == 0  # whole batches only
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    conn = open_store(db)  # space is back (a new connection has no page limit): the next run continues
    s = import_paths(conn, [str(tmp_path / "a.mbox")], cfg)
    assert s.new == 400 - stored
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 400


def test_disk_full_reaches_the_user_as_one_line(tmp_path):
    """Through the real command: a tiny filesystem is not available unprivileged, so a size limit on the
    process (RLIMIT_FSIZE) makes the write fail the way a full disk does."""
    write_mbox(tmp_path / "a.mbox", [msg(message_id=f"<f{i}@x>", subject=f"s{i}", body="y" * 4000 + f"{i}\n")
                                     for i in range(600)])
    db = tmp_path / "s.db"
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (600000, 600000)); "
            "sys.argv = ['mailaudit', '--db', sys.argv[1], 'import', sys.argv[2]]; "
            "from mailaudit.cli import main; main()")
    res = subprocess.run([sys.executable, "-c", code, str(db), str(tmp_path / "a.mbox")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 9, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("mailaudit: error: ")
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    c.close()
    res = run_cli("--quiet", "--db", str(db), "import", str(tmp_path / "a.mbox"))
    assert res.returncode == 0, res.stderr
    assert sqlite3.connect(db).execute("SELECT count(*) FROM messages").fetchone()[0] == 600


def test_two_writers_at_once_one_waits_out_with_exit_7_never_a_locked_traceback(tmp_path):
    raws = [msg(message_id=f"<w{i}@x>", subject=f"w{i}", body=f"text {i}\n" * 50) for i in range(4000)]
    path = write_mbox(tmp_path / "w.mbox", raws)
    db = tmp_path / "s.db"
    first = subprocess.Popen([sys.executable, "-m", "mailaudit", "--quiet", "--db", str(db), "import", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not Path(str(db) + ".lock").exists() and time.time() < deadline:
        time.sleep(0.02)
    second = run_cli("--db", str(db), "import", str(path))
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode in (0, 7), second.stderr  # 0 only if the first had already finished
    assert "Traceback" not in second.stderr and "database is locked" not in second.stderr
    if second.returncode == 7:
        assert second.stderr.strip().startswith("mailaudit: error: another mailaudit run holds")
    assert os.path.exists(db)
