"""The real command: one test per exit status, --json keys, help for every command, the config example."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from mailaudit import config as config_mod
from mailaudit.cli import cli
from mailaudit.store import open_store

from conftest import run_cli
from mailgen import msg, write_mbox

ROOT = Path(__file__).resolve().parents[1]


def test_import_then_status_json(tmp_path):
    mbox = write_mbox(tmp_path / "Sent.mbox", [msg(frm="Pat <pat@example.com>", to="Ann <ann@example.com>")])
    write_mbox(tmp_path / "inbox.mbox", [msg(message_id="<r@x>", subject="hi")])
    db = tmp_path / "s.db"
    res = run_cli("--db", str(db), "import", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "imported 2 new messages" in res.stdout
    st = json.loads(run_cli("--db", str(db), "status", "--json").stdout)
    for key in ("messages", "threads", "contacts", "defects", "first_date", "last_date", "me"):
        assert key in st
    assert st["messages"] == 2 and st["me"] == ["pat@example.com"] and st["me_inferred"] == ["pat@example.com"]
    text = run_cli("--db", str(db), "status").stdout
    assert "inferred from sent folders: pat@example.com" in text
    assert mbox.exists()


def test_ok_is_0_and_quiet_prints_only_the_result(tmp_path):
    write_mbox(tmp_path / "a.mbox", [msg()])
    res = run_cli("--db", str(tmp_path / "s.db"), "--quiet", "import", str(tmp_path / "a.mbox"))
    assert res.returncode == 0 and res.stderr == ""


def test_usage_error_is_2(tmp_path):
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("import").returncode == 2


def test_config_error_is_3(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[parse]\nbody_max_chars = 'lots'\n")
    res = run_cli("--config", str(bad), "--db", str(tmp_path / "s.db"), "status")
    assert res.returncode == 3
    assert res.stderr.count("\n") == 1 and "body_max_chars" in res.stderr and str(bad) in res.stderr
    bad.write_text("[nope]\nx = 1\n")
    assert run_cli("--config", str(bad), "status").returncode == 3
    bad.write_text("this is = = not toml")
    assert run_cli("--config", str(bad), "status").returncode == 3
    assert run_cli("--config", str(tmp_path / "missing.toml"), "status").returncode == 3


def test_missing_source_is_5_and_names_the_path(tmp_path):
    res = run_cli("--db", str(tmp_path / "s.db"), "import", str(tmp_path / "nothere.mbox"))
    assert res.returncode == 5
    expected = f"mailaudit: error: {tmp_path / 'nothere.mbox'}: no such file or directory; check the path"
    assert res.stderr.strip() == expected


def test_unknown_format_is_6(tmp_path):
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4 not mail")
    res = run_cli("--db", str(tmp_path / "s.db"), "import", str(tmp_path / "x.pdf"))
    assert res.returncode == 6 and "x.pdf" in res.stderr and "Traceback" not in res.stderr


def test_foreign_or_corrupt_store_is_9_and_untouched(tmp_path):
    foreign = tmp_path / "other.db"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    before = foreign.read_bytes()
    res = run_cli("--db", str(foreign), "status")
    assert res.returncode == 9 and "another program" in res.stderr
    assert foreign.read_bytes() == before
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello, I am a text file" * 10)
    res = run_cli("--db", str(junk), "status")
    assert res.returncode == 9 and junk.read_bytes() == b"hello, I am a text file" * 10


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "s.db"
    open_store(db).close()
    c = sqlite3.connect(db)
    c.execute("PRAGMA user_version=999")
    c.close()
    res = run_cli("--db", str(db), "status")
    assert res.returncode == 9 and "newer mailaudit" in res.stderr


def test_migration_backs_up_an_existing_store(tmp_path):
    from mailaudit import migrations

    db = tmp_path / "s.db"
    c = sqlite3.connect(db)
    for statement in migrations.MIGRATIONS[0][1].split(";\n"):
        if statement.strip():
            c.execute(statement)
    c.execute("INSERT INTO meta VALUES ('marker', 'v1 data')")
    c.execute("PRAGMA application_id=1296127300")
    c.execute("PRAGMA user_version=1")
    c.commit()
    c.close()
    conn = open_store(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS)
    backup = tmp_path / "s.db.bak-v1"
    assert backup.exists()
    assert sqlite3.connect(backup).execute("SELECT value FROM meta").fetchone()[0] == "v1 data"


def test_migration_moves_texts_out_of_the_message_rows(tmp_path):
    """m005: a store from before keeps every message's text, now in `texts`, and message rows lose it."""
    from mailaudit import migrations

    db = tmp_path / "s.db"
    c = sqlite3.connect(db)
    for _name, sql in migrations.MIGRATIONS[:4]:
        for statement in sql.split(";\n"):
            if statement.strip():
                c.execute(statement)
    c.execute("INSERT INTO messages(id, message_id, content_hash, own_text, body_text) VALUES "
              "(7, 'a@x', 'h', 'Thanks for the intro!', 'Thanks for the intro!\n> old')")
    c.execute("PRAGMA application_id=1296127300")
    c.execute("PRAGMA user_version=4")
    c.commit()
    c.close()
    conn = open_store(db)
    assert conn.execute("SELECT * FROM texts").fetchall() == [(7, "Thanks for the intro!",
                                                              "Thanks for the intro!\n> old")]
    columns = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    assert "message_id" in columns and not columns & {"own_text", "body_text"}
    conn.execute("DELETE FROM messages WHERE id=7")
    assert conn.execute("SELECT count(*) FROM texts").fetchone()[0] == 0  # forget takes the text with it


def test_traceback_flag_shows_the_stack(tmp_path):
    res = run_cli("--traceback", "--db", str(tmp_path / "s.db"), "import", str(tmp_path / "nothere"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_every_command_has_help():
    import click

    names = cli.list_commands(click.Context(cli))
    assert {"sync", "import", "run", "demo", "classify", "label", "train", "evaluate"} <= set(names)
    for name in names:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None and command.help, f"command {name} has no help text"
        res = run_cli(name, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout


def test_config_example_documents_every_key_and_loads():
    example = ROOT / "config.example.toml"
    raw = tomllib.loads(example.read_text())
    cfg = config_mod.parse_config(raw, str(example))
    assert cfg.parse.body_max_chars == config_mod.ParseConfig().body_max_chars
    for section, cls in config_mod._SECTIONS.items():
        assert section in raw, f"[{section}] missing from config.example.toml"
        for f in fields(cls):
            assert f.name in raw[section], f"[{section}] {f.name} missing from config.example.toml"


def test_readme_first_screen_has_exactly_two_commands():
    text = (ROOT / "README.md").read_text()
    first = text.split("---")[0]
    commands = [ln.strip() for ln in first.splitlines() if ln.startswith("    ")]
    assert commands == ["pip install . && mailaudit demo", "bash tests/run.sh"]
    assert "bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("env_var", [True, False])
def test_config_lookup_env_and_flag(tmp_path, env_var):
    import os

    cfgfile = tmp_path / "c.toml"
    cfgfile.write_text(f'[store]\npath = "{tmp_path / "from-config.db"}"\n')
    env = dict(os.environ, MAILAUDIT_CONFIG=str(cfgfile)) if env_var else None
    args = ("status",) if env_var else ("--config", str(cfgfile), "status")
    res = run_cli(*args, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "from-config.db").exists()
