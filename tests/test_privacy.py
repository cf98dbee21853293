"""The owner's privacy controls: forget a contact (with a tombstone), private file modes, config warnings."""

from __future__ import annotations

import os
import sqlite3

from conftest import run_cli
from mailgen import msg, rfc_date, write_mbox

ME = "Pat Morgan <pat@example.com>"


def _store(tmp_path):
    raws = [
        msg(frm="Ann Lee <ann@example.com>", to=ME, subject="hi", message_id="<a1@x>", date=rfc_date(2026, 3, 1)),
        msg(frm=ME, to="Ann Lee <ann@example.com>", subject="Re: hi", message_id="<a2@x>", date=rfc_date(2026, 3, 2)),
        msg(frm="Bob Roe <bob@example.com>", to=ME, subject="yo", message_id="<b1@x>", date=rfc_date(2026, 3, 3)),
        msg(frm=ME, to="Bob Roe <bob@example.com>, Ann Lee <ann@example.com>", subject="both", message_id="<c1@x>",
            date=rfc_date(2026, 3, 4)),
    ]
    write_mbox(tmp_path / "mail" / "Sent.mbox", [raws[1], raws[3]])
    write_mbox(tmp_path / "mail" / "inbox.mbox", [raws[0], raws[2]])
    db = tmp_path / "s.db"
    assert run_cli("--db", str(db), "import", str(tmp_path / "mail")).returncode == 0
    return db


def test_forget_removes_messages_labels_and_keeps_them_out(tmp_path):
    db = _store(tmp_path)
    labels = tmp_path / "l.csv"
    labels.write_text("message_id,acts\n<a1@x>,thank_you\n<b1@x>,thank_you\n")
    assert run_cli("--db", str(db), "label", "import", str(labels)).returncode == 0
    res = run_cli("--db", str(db), "forget", "ANN@Example.com")
    assert res.returncode == 0, res.stderr
    assert "3 messages removed" in res.stdout
    c = sqlite3.connect(db)
    assert [r[0] for r in c.execute("SELECT subject FROM messages ORDER BY id")] == ["yo"]
    assert c.execute("SELECT count(*) FROM labels").fetchone()[0] == 1
    assert c.execute("SELECT count(*) FROM names WHERE addr='ann@example.com'").fetchone()[0] == 0
    # a later import of a new export does not bring Ann back
    write_mbox(tmp_path / "more" / "inbox.mbox", [msg(frm="Ann Lee <ann@example.com>", to=ME, subject="again",
                                                      message_id="<a3@x>", date=rfc_date(2026, 4, 1))])
    res = run_cli("--db", str(db), "import", str(tmp_path / "more"))
    assert "0 new messages" in res.stdout and "1 skipped" in res.stdout
    # until the user undoes it
    assert run_cli("--db", str(db), "forget", "--undo", "ann@example.com").returncode == 0
    res = run_cli("--db", str(db), "import", str(tmp_path / "more"))
    assert "1 new messages" in res.stdout, res.stdout


def test_store_and_folders_are_private(tmp_path):
    db = tmp_path / "new" / "deeper" / "s.db"
    write_mbox(tmp_path / "a.mbox", [msg()])
    assert run_cli("--db", str(db), "import", str(tmp_path / "a.mbox")).returncode == 0
    assert (db.stat().st_mode & 0o777) == 0o600
    assert (db.parent.stat().st_mode & 0o777) == 0o700
    for extra in db.parent.glob("s.db-*"):
        assert (extra.stat().st_mode & 0o077) == 0, extra


def test_world_readable_config_with_secret_keys_warns(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[accounts]]\nname = "work"\nhost = "imap.example.com"\nusername = "pat"\n'
                   'oauth2_client_secret = "not-so-secret"\nauth = "oauth2"\noauth2_client_id = "id"\n')
    os.chmod(cfg, 0o644)
    res = run_cli("--config", str(cfg), "--db", str(tmp_path / "s.db"), "status")
    assert res.returncode == 0, res.stderr
    assert "readable by other users" in res.stderr and "chmod 600" in res.stderr
    os.chmod(cfg, 0o600)
    res = run_cli("--config", str(cfg), "--db", str(tmp_path / "s.db"), "status")
    assert "readable by other users" not in res.stderr
