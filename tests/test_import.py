"""Import end to end into a real SQLite file: every format, dedup, re-import, resume, identity."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest

from mailaudit.config import Config, IdentityConfig
from mailaudit.errors import ArchiveFormatError, SourceUnavailableError
from mailaudit.ingest import import_paths
from mailaudit.store import load_status

from mailgen import msg, rfc_date, write_emls, write_maildir, write_mbox

ME = "Pat Morgan <pat@example.com>"


def corpus(n: int = 6) -> list[bytes]:
    out = []
    for i in range(n):
        out.append(
            msg(
                frm=f"Person {i} <p{i}@example.com>",
                to=ME,
                subject=f"Topic {i}",
                body=f"Hello Pat, message number {i} with its own words.\n",
                date=rfc_date(2026, 3, 1 + i),
                message_id=f"<in{i}@example.com>",
            )
        )
    return out


def sent(n: int = 3) -> list[bytes]:
    return [
        msg(
            frm=ME, to=f"Person {i} <p{i}@example.com>", subject=f"Re: Topic {i}", body=f"Thanks {i}!\n",
            date=rfc_date(2026, 3, 10 + i), message_id=f"<out{i}@example.com>",
            extra={"In-Reply-To": f"<in{i}@example.com>"},
        )
        for i in range(n)
    ]


def count(conn: sqlite3.Connection, sql: str = "SELECT count(*) FROM messages") -> int:
    return conn.execute(sql).fetchone()[0]


def test_mbox_and_gz(tmp_path, conn, cfg):
    write_mbox(tmp_path / "a.mbox", corpus(4))
    write_mbox(tmp_path / "b.mbox.gz", corpus(6), gz=True)
    s = import_paths(conn, [str(tmp_path / "a.mbox"), str(tmp_path / "b.mbox.gz")], cfg)
    assert (s.new, s.duplicates) == (6, 4)
    assert count(conn) == 6


def test_mbox_body_from_lines_are_unescaped_and_split_correctly(tmp_path, conn, cfg):
    body = "First line\nFrom here on, it gets interesting.\n\nFrom the desk of Ann\n"
    write_mbox(tmp_path / "x.mbox", [msg(body=body), msg(message_id="<m2@example.com>", subject="two")])
    import_paths(conn, [str(tmp_path / "x.mbox")], cfg)
    assert count(conn) == 2
    text = conn.execute("SELECT body_text FROM texts JOIN messages ON id=message WHERE subject='Hello'").fetchone()[0]
    assert "From the desk of Ann" in text and ">From" not in text


def test_takeout_keeps_thread_ids_and_labels(tmp_path, conn, cfg):
    raws = [
        msg(message_id="<t1@x>", extra={"X-GM-THRID": "1700000000000000001", "X-Gmail-Labels": "Inbox,Important"}),
        msg(frm=ME, to="Ann Lee <ann@example.com>", subject="Re: Hello", message_id="<t2@x>",
            date=rfc_date(2026, 5, 5), extra={"X-GM-THRID": "1700000000000000001", "X-Gmail-Labels": "Sent"}),
        msg(message_id="<t3@x>", subject="Other", extra={"X-GM-THRID": "1700000000000000002",
                                                         "X-Gmail-Labels": '"Category Updates",Inbox'}),
    ]
    write_mbox(tmp_path / "All mail Including Spam and Trash.mbox", raws)
    s = import_paths(conn, [str(tmp_path)], cfg)
    assert s.me == ["pat@example.com"]  # inferred from the Sent label
    sql = "SELECT message_id, gm_thrid, labels, thread_id, direction FROM messages ORDER BY id"
    rows = conn.execute(sql).fetchall()
    assert rows[0][1] == rows[1][1] == "1700000000000000001"
    assert rows[0][3] == rows[1][3] != rows[2][3]
    assert rows[2][2].split("\n") == ["Category Updates", "Inbox"]
    assert [r[4] for r in rows] == ["received", "sent", "received"]


def test_new_maildir_file_is_picked_up(tmp_path, conn, cfg):
    md = write_maildir(tmp_path / "md", corpus(2))
    import_paths(conn, [str(md)], cfg)
    (md / "new" / "1800000000.9.host").write_bytes(corpus(3)[2])
    import os

    os.utime(md / "new", (2_000_000_000, 2_000_000_000))
    s = import_paths(conn, [str(md)], cfg)
    assert (s.new, s.seen) == (1, 1)


def test_maildir_tree_and_eml_folder_and_single_eml(tmp_path, conn, cfg):
    root = tmp_path / "Mail"
    write_maildir(root, corpus(2), sub="new")
    write_maildir(root / ".Sent", sent(2))
    write_maildir(root / ".Archive", corpus(4)[2:])
    write_emls(tmp_path / "emls", [msg(message_id="<e1@x>", subject="eml one")])
    single = tmp_path / "one.eml"
    single.write_bytes(msg(message_id="<e2@x>", subject="eml two"))
    s = import_paths(conn, [str(root), str(tmp_path / "emls"), str(single)], cfg)
    assert s.new == 2 + 2 + 2 + 1 + 1
    assert s.me == ["pat@example.com"]  # the Maildir .Sent folder
    assert count(conn, "SELECT count(*) FROM messages WHERE direction='sent'") == 2


def test_directory_of_people_like_enron(tmp_path, conn, cfg):
    for person in ("allen-p", "beck-s"):
        write_mbox(tmp_path / person / "sent.mbox", sent(2))
        write_mbox(tmp_path / person / "inbox.mbox", corpus(3))
    s = import_paths(conn, [str(tmp_path)], cfg)
    assert s.sources == 4
    assert count(conn) == 5  # the same messages in both people's folders are stored once


def test_same_message_under_different_message_ids_is_stored_once(tmp_path, conn, cfg):
    a = msg(message_id="<copy1.JavaMail@thyme>", subject="ERMS", body="The servers arrive Monday.\n")
    b = msg(message_id="<copy2.JavaMail@thyme>", subject="ERMS", body="The servers arrive Monday.\n")
    write_mbox(tmp_path / "sent.mbox", [a])
    write_mbox(tmp_path / "_sent_mail.mbox", [b])
    s = import_paths(conn, [str(tmp_path)], cfg)
    assert (s.new, s.duplicates) == (1, 1)
    ids = {r[0] for r in conn.execute("SELECT msgid FROM message_ids")}
    assert ids == {"copy1.JavaMail@thyme", "copy2.JavaMail@thyme"}


def test_shared_message_id_with_different_content_is_not_merged(tmp_path, conn, cfg):
    a = msg(message_id="<same@x>", body="one\n", date=rfc_date(2026, 1, 1))
    b = msg(message_id="<same@x>", frm="Other <o@example.com>", body="two\n", date=rfc_date(2026, 2, 1))
    write_mbox(tmp_path / "m.mbox", [a, b])
    import_paths(conn, [str(tmp_path / "m.mbox")], cfg)
    assert count(conn) == 2
    assert count(conn, "SELECT count(*) FROM messages WHERE defects LIKE '%duplicate_message_id%'") == 1


def test_reimport_changes_nothing_and_skips_unchanged_files(tmp_path, conn, cfg):
    write_mbox(tmp_path / "a.mbox", corpus(5))
    write_maildir(tmp_path / "md", corpus(3))
    import_paths(conn, [str(tmp_path)], cfg)
    before = conn.execute("SELECT id, thread_id, content_hash FROM messages ORDER BY id").fetchall()
    s = import_paths(conn, [str(tmp_path)], cfg)
    assert (s.new, s.seen, s.unchanged) == (0, 0, 2)
    assert conn.execute("SELECT id, thread_id, content_hash FROM messages ORDER BY id").fetchall() == before


def test_appended_mbox_resumes_at_cursor(tmp_path, conn, cfg):
    path = write_mbox(tmp_path / "a.mbox", corpus(3))
    import_paths(conn, [str(path)], cfg)
    more = corpus(6)[3:]
    with open(path, "ab") as fh:
        fh.write(write_mbox(tmp_path / "b.mbox", more).read_bytes())
    s = import_paths(conn, [str(path)], cfg)
    assert (s.seen, s.new) == (3, 3)


class _InterruptAfterFirstBatch:
    def __init__(self) -> None:
        self.batches = 0

    def begin(self, label, total, unit):
        pass

    def advance(self, amount, items=0):
        if items:
            self.batches += 1
            if self.batches == 1:
                raise KeyboardInterrupt

    def note(self, text):
        pass

    def end(self):
        pass


def test_ctrl_c_keeps_committed_batches_and_next_import_resumes(tmp_path, db_path, conn):
    cfg = Config(import_=type(Config().import_)(batch_size=4))
    path = write_mbox(tmp_path / "a.mbox", corpus(10))
    with pytest.raises(KeyboardInterrupt):
        import_paths(conn, [str(path)], cfg, _InterruptAfterFirstBatch())
    assert count(conn) == 4
    s = import_paths(conn, [str(path)], cfg)
    assert (s.seen, s.new) == (6, 6)
    assert count(conn) == 10


def test_truncated_mbox_keeps_everything_before_the_damage(tmp_path, conn, cfg):
    data = write_mbox(tmp_path / "a.mbox", corpus(5)).read_bytes()
    cut = data[: data.rfind(b"message number 4") + 10]
    (tmp_path / "a.mbox").write_bytes(cut)
    s = import_paths(conn, [str(tmp_path / "a.mbox")], cfg)
    assert s.new == 5
    subjects = {r[0] for r in conn.execute("SELECT subject FROM messages")}
    assert subjects == {f"Topic {i}" for i in range(5)}
    last = conn.execute("SELECT body_text FROM texts JOIN messages ON id=message WHERE subject='Topic 4'").fetchone()[0]
    assert last.startswith("Hello Pat, message") and "own words" not in last


def test_bad_messages_are_stored_with_defects_not_fatal(tmp_path, conn, cfg):
    raws = [
        msg(message_id=None, subject="no id", body="no id body\n"),
        msg(date=None, message_id="<nodate@x>", subject="no date"),
        msg(content_type="text/plain; charset=x-bogus", raw_body="caf\xe9".encode("latin-1"), message_id="<cs@x>"),
        b"Subject: =?utf-8?b?!!!notbase64?=\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@@\r\n",
        msg(message_id="<ok@x>", subject="fine"),
    ]
    write_mbox(tmp_path / "a.mbox", raws)
    s = import_paths(conn, [str(tmp_path / "a.mbox")], cfg)
    assert s.new == 5
    assert s.defects == 4
    assert load_status(conn)["defects"] == 4


def test_configured_identity_wins_and_aliases_normalise(tmp_path, db_path):
    from mailaudit.store import open_store

    raws = [
        msg(frm="Pat <Pat.Morgan@gmail.com>", to="x@example.com", message_id="<a@x>"),
        msg(frm="Pat <pat@work.example>", to="x@example.com", message_id="<b@x>", subject="b"),
        msg(frm="X <x@example.com>", to="patmorgan+jobs@googlemail.com", message_id="<c@x>", subject="c"),
    ]
    write_mbox(tmp_path / "inbox.mbox", raws)
    cfg = Config(identity=IdentityConfig(addresses=("p.atmorgan+jobs@gmail.com", "PAT@work.example")))
    conn = open_store(db_path)
    import_paths(conn, [str(tmp_path / "inbox.mbox")], cfg)
    st = load_status(conn)
    assert st["me"] == ["patmorgan@gmail.com", "pat@work.example"] or set(st["me"]) == {
        "patmorgan@gmail.com", "pat@work.example"}
    assert st["me_inferred"] == []
    assert (st["sent"], st["received"], st["contacts"]) == (2, 1, 1)


def test_bulk_senders_are_not_contacts(tmp_path, conn, cfg):
    raws = [
        msg(frm="News <news@shop.example>", extra={"List-Unsubscribe": "<mailto:u@shop.example>"}, message_id="<n@x>"),
        msg(frm="Robot <noreply@service.example>", message_id="<r@x>", subject="r"),
        msg(frm="Ann <ann@example.com>", message_id="<h@x>", subject="h"),
    ]
    write_mbox(tmp_path / "inbox.mbox", raws)
    import_paths(conn, [str(tmp_path / "inbox.mbox")], cfg)
    st = load_status(conn)
    assert st["bulk"] == 2 and st["contacts"] == 1 and st["messages"] == 3


def test_missing_path_and_unknown_format_are_errors(tmp_path, conn, cfg):
    with pytest.raises(SourceUnavailableError, match="nope.mbox"):
        import_paths(conn, [str(tmp_path / "nope.mbox")], cfg)
    junk = tmp_path / "notes.txt"
    junk.write_text("just some notes\n")
    with pytest.raises(ArchiveFormatError, match="notes.txt"):
        import_paths(conn, [str(junk)], cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveFormatError, match="no mailbox found"):
        import_paths(conn, [str(tmp_path / "empty")], cfg)
    bad_gz = tmp_path / "x.mbox.gz"
    bad_gz.write_bytes(gzip.compress(b"not a mailbox at all\n"))
    with pytest.raises(ArchiveFormatError):
        import_paths(conn, [str(bad_gz)], cfg)


def test_unreadable_maildir_file_is_counted_not_fatal(tmp_path, conn, cfg):
    import os

    md = write_maildir(tmp_path / "md", corpus(3))
    victim = sorted((md / "cur").iterdir())[0]
    os.chmod(victim, 0)
    if os.access(victim, os.R_OK):  # root reads anything: make it a dangling symlink-free directory instead
        os.chmod(victim, 0o600)
        victim.unlink()
        victim.mkdir()
        (md / "cur" / "broken:2,S").symlink_to(tmp_path / "missing-target")
    s = import_paths(conn, [str(md)], cfg)
    assert s.new == 2
    assert s.skipped >= 1 or s.new == 2


def test_store_files_are_private(db_path, conn):
    assert (Path(db_path).stat().st_mode & 0o777) == 0o600


def test_background_checkpoints_copy_committed_frames_off_the_writer(tmp_path):
    """During a big sync a thread checkpoints, the writer only past WAL_RESTART_BYTES; the usual setting returns."""
    import os
    import time

    from mailaudit import store

    db = tmp_path / "s.db"
    conn = store.open_store(db)
    conn.execute("CREATE TABLE filler (x BLOB)")
    before = os.path.getsize(db)
    with store.background_checkpoints(conn, every_s=0.05):
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == store.WAL_RESTART_BYTES // 4096
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO filler VALUES (?)", ((os.urandom(4000),) for _ in range(2000)))
        conn.execute("COMMIT")
        deadline = time.monotonic() + 10
        while os.path.getsize(db) < before + 7_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(db) >= before + 7_000_000  # the frames reached the database file
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == store.WAL_AUTOCHECKPOINT
    assert conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 2000
    conn.close()


def test_background_checkpoints_keep_a_streaming_writers_wal_bounded(tmp_path):
    """A writer that never pauses still gets its WAL started over: with PASSIVE checkpoints alone the log grew
    to everything written (6 GB into a 1,000,000-message import), since it only wraps when a batch begins with
    every frame copied back, and the next batch always began first."""
    import os

    from mailaudit import store

    db = tmp_path / "s.db"
    conn = store.open_store(db)
    conn.execute("CREATE TABLE filler (x BLOB)")
    largest = 0
    with store.background_checkpoints(conn, every_s=0.01, restart_bytes=2 << 20):
        for _ in range(120):  # 30 MB in 256 KB batches, back to back
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO filler VALUES (?)", ((os.urandom(32 * 1024),) for _ in range(8)))
            conn.execute("COMMIT")
            largest = max(largest, os.path.getsize(f"{db}-wal"))
    assert largest < 12 << 20, f"the WAL reached {largest >> 20} MB of 30 MB written"
    assert conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 960
    conn.close()
