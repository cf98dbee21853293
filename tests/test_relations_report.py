"""Metrics, statuses, windows, identity, bulk mail, timezones, labels over predictions, the export and
`mailaudit report`."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from relgen import AS_OF, Box, ago, audit, config, flags, metrics, status

from mailaudit.config import Config, IdentityConfig, RelationsConfig, parse_config
from mailaudit.errors import ConfigError
from mailaudit.export import render_csv, write_file_atomic
from mailaudit.frames import MESSAGE_COLUMNS, RECIPIENT_COLUMNS, Frames, empty, load_model_info
from mailaudit.relations import METRIC_COLUMNS, build_export, build_relations
from mailaudit.store import find_message, save_labels

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
X = "Xena Park <x@example.com>"
Y = "Yuri Tan <y@example.com>"


def exchange(box: Box, who: str, sent: int, received: int, first: float, last: float) -> None:
    """`sent` messages to and `received` from `who`, spread between `first` and `last` days before as_of."""
    for n, send in ((sent, box.send), (received, box.receive)):
        for k in range(n):
            send(who, ago(first - (first - last) * k / max(n - 1, 1)))


# statuses ------------------------------------------------------------------------------------------------


def test_status_precedence(tmp_path):
    box = Box()
    a, b, c, d, e = (f"{n} <{n}@example.com>" for n in "abcde")
    for k in range(3):  # a: glomming (bruised) and never_offers (one_way)
        box.receive(a, ago(20, hours=k), ["intro_request"])
    exchange(box, b, 2, 2, 170, 100)  # b: drifting and a stranger_handoff (one_way wins)
    exchange(box, b, 4, 0, 80, 10)
    box.receive(b, ago(5), ["handoff"], cc=["c1@example.com", "c2@example.com", "c3@example.com"])
    exchange(box, c, 2, 2, 170, 100)  # c: drifting only
    exchange(box, c, 4, 0, 80, 10)
    for k in range(3):  # d: an old burst of asks, outside the window, then silence: dormant
        box.receive(d, ago(200, hours=k), ["intro_request"])
    exchange(box, e, 3, 3, 60, 10)  # e: healthy
    rel = box.audit(tmp_path)
    assert [status(rel, f"{n}@example.com") for n in "abcde"] == [
        "bruised", "one_way", "drifting", "dormant", "healthy"]
    assert flags(rel, "d@example.com") == set()
    assert list(rel.contacts["contact"]) == [f"{n}@example.com" for n in "abcde"]  # worst first


@pytest.mark.parametrize(
    ("prev", "now", "hit"),
    [
        ((3, 5), (3, 10), True),  # 0.6 -> 0.3: a drop of exactly 0.3
        ((3, 5), (3, 9), False),  # 0.6 -> 0.33
        ((2, 2), (4, 0), True),  # 4 messages now
        ((2, 2), (3, 0), False),  # only 3 now
        ((2, 1), (4, 0), False),  # only 3 before
    ],
)
def test_drifting_thresholds(tmp_path, prev, now, hit):
    box = Box()
    exchange(box, X, *prev, 170, 100)
    exchange(box, X, *now, 80, 10)
    rel = box.audit(tmp_path)
    assert (status(rel, "x@example.com") == "drifting") is hit


@pytest.mark.parametrize(("last", "expected"), [(ago(180), "healthy"), (ago(180, seconds=1), "dormant")])
def test_dormant_after_180_days_without_mail(tmp_path, last, expected):
    box = Box()
    box.send(X, ago(400))
    box.receive(X, last)
    assert status(box.audit(tmp_path), "x@example.com") == expected


# windows -------------------------------------------------------------------------------------------------


def test_window_edges(tmp_path):
    box = Box()
    box.send(X, ago(90))  # the first instant of the window
    box.send(X, ago(90, seconds=1))  # the previous window
    box.send(X, ago(180))  # the first instant of the previous window
    box.send(X, ago(180, seconds=1))  # before both windows
    box.receive(X, ago(0, seconds=1))  # the last instant before as_of
    box.receive(X, AS_OF)  # as_of itself is after the window: ignored
    box.receive(Y, AS_OF)  # a contact only after as_of is not listed
    rel = box.audit(tmp_path)
    m = metrics(rel, "x@example.com")
    assert (m["sent"], m["received"], m["sent_prev"], m["received_prev"]) == (1, 1, 2, 0)
    assert m["last_contact"] == "2026-05-31"
    assert "y@example.com" not in set(rel.contacts["contact"])


def test_windows_follow_the_utc_date_not_the_local_one(tmp_path):
    box = Box()
    box.receive(X, "Sun, 31 May 2026 23:30:00 -0500")  # 04:30 UTC on 1 June: after as_of
    box.receive(X, "Mon, 01 Jun 2026 01:10:00 +0200")  # 23:10 UTC on 31 May: inside
    box.send(X, "Sat, 02 Mar 2026 23:30:00 -0300")  # 02:30 UTC on 3 March = as_of - 90 days + 2.5 h: inside
    box.send(X, "Tue, 03 Mar 2026 01:10:00 +0200")  # 23:10 UTC on 2 March: the previous window
    m = metrics(box.audit(tmp_path), "x@example.com")
    assert (m["received"], m["sent"], m["sent_prev"]) == (1, 1, 1)


def test_as_of_moves_the_window(tmp_path):
    box = Box()
    box.receive(X, ago(10), ["handoff"])
    conn = box.store(tmp_path)
    assert ("stranger_handoff", "them") in flags(audit(conn), "x@example.com")
    later = audit(conn, as_of=AS_OF.replace(month=9, day=1))
    assert flags(later, "x@example.com") == set() and status(later, "x@example.com") == "healthy"
    earlier = audit(conn, as_of=AS_OF.replace(month=5, day=1))
    assert "x@example.com" not in set(earlier.contacts["contact"])
    conn.close()


# reply times, rates and the other metrics -----------------------------------------------------------------


def test_reply_time_across_timezones(tmp_path):
    box = Box()
    mine = box.send(X, "Mon, 11 May 2026 23:30:00 -0700")  # 06:30 UTC on 12 May
    theirs = box.receive(X, "Wed, 13 May 2026 01:10:00 +0200", reply_to=mine)  # 23:10 UTC on 12 May
    box.send(X, "Wed, 13 May 2026 08:10:00 +0900", reply_to=theirs)  # 23:10 UTC on 12 May: 0 h later
    m = metrics(box.audit(tmp_path), "x@example.com")
    assert m["median_reply_hours_them"] == pytest.approx(16.67, abs=0.01)
    assert m["median_reply_hours_me"] == 0.0


def test_only_replies_count_as_replies(tmp_path):
    box = Box()
    gm = {"X-GM-THRID": "1700000000000000001"}
    mine = box.send(X, ago(30), extra=gm, subject="Plans")
    box.receive(X, ago(29), extra=gm, subject="Other plans")  # same Gmail thread, but not a reply
    box.receive(X, ago(27), reply_to=mine, extra=gm)
    box.send(Y, ago(20))  # never answered
    rel = box.audit(tmp_path)
    m = metrics(rel, "x@example.com")
    assert m["median_reply_hours_them"] == 72.0 and m["reply_rate_them"] == 1.0
    assert m["reply_rate_me"] == 0.0 and m["median_reply_hours_me"] != m["median_reply_hours_me"]  # NaN
    y = metrics(rel, "y@example.com")
    assert y["reply_rate_them"] == 0.0 and y["reply_rate_me"] != y["reply_rate_me"]


def test_counts_each_way(tmp_path):
    box = Box()
    a1 = box.receive(X, ago(60), ["intro_request"])
    box.send(X, ago(59), ["handoff"], reply_to=a1)
    box.receive(X, ago(58), ["thank_you"], reply_to=a1)
    box.send(X, ago(50), ["intro_request"])
    box.send(X, ago(40), ["reciprocal_ask"])
    box.receive(X, ago(30))
    box.receive(X, ago(120))  # previous window
    m = metrics(box.audit(tmp_path), "x@example.com")
    assert (m["sent"], m["received"], m["received_prev"]) == (3, 3, 1)
    assert (m["asks_by_them"], m["asks_by_me"], m["gives_by_them"], m["gives_by_me"]) == (1, 1, 1, 2)
    assert (m["threads_started_by_them"], m["threads_started_by_me"]) == (2, 2)
    assert (m["reciprocity"], m["reciprocity_prev"]) == (1.0, 0.0)
    assert m["last_contact"] == "2026-05-02"
    assert m["longest_silence_days"] == 60.0  # 120 -> 60 days before as_of
    assert m["reply_rate_them"] == pytest.approx(0.333, abs=0.001)


# who is who -----------------------------------------------------------------------------------------------


def test_bulk_and_automated_mail_is_not_a_relationship(tmp_path):
    box = Box()
    asks = ["intro_request"]
    box.receive(X, ago(10), asks, extra={"List-Id": "<jobs.lists.example>"})
    box.receive(X, ago(10, hours=1), asks, extra={"List-Unsubscribe": "<mailto:u@lists.example>"})
    box.receive(X, ago(10, hours=2), asks, extra={"Precedence": "bulk"})
    box.receive(X, ago(10, hours=3), asks, extra={"Auto-Submitted": "auto-replied"})
    box.receive("Jobs <no-reply@jobs.example>", ago(9), asks)
    box.send("Jobs <noreply@jobs.example>", ago(9))  # my mail to a robot does not make it a contact
    box.receive(Y, ago(8), extra={"Auto-Submitted": "no"})  # a person
    rel = box.audit(tmp_path)
    assert list(rel.contacts["contact"]) == ["y@example.com"]
    assert rel.flags.empty


def test_owner_addresses_normalise_and_are_never_contacts(tmp_path):
    box = Box(me="Pat <pat.morgan+work@gmail.com>")
    box.receive(X, ago(10))
    box.mail(X, ["Pat <Pat.Morgan@googlemail.com>"], ago(9))
    box.send([X, "Pat <patmorgan@gmail.com>"], ago(8))  # copying myself
    cfg = Config(identity=IdentityConfig(addresses=("p.atmorgan+jobs@gmail.com",)))
    rel = box.audit(tmp_path, cfg)
    assert list(rel.contacts["contact"]) == ["x@example.com"]
    assert rel.me == ("patmorgan@gmail.com",)
    m = metrics(rel, "x@example.com")
    assert (m["sent"], m["received"]) == (1, 2)


def test_people_only_on_cc_of_others_mail_are_not_listed(tmp_path):
    box = Box()
    box.receive(X, ago(10), cc=[Y, "Zoe <z@example.com>"])
    box.send(X, ago(9), cc=["Zoe <z@example.com>"])  # Zoe is on my Cc: mail to her
    assert list(box.audit(tmp_path).contacts["contact"]) == ["x@example.com", "z@example.com"]


def test_identity_merge_makes_one_contact(tmp_path):
    box = Box()
    box.receive("Ann Lee <ann@work.example>", ago(20), ["intro_request"])
    box.receive("Ann Lee <Ann.Lee@gmail.com>", ago(20, hours=1), ["intro_request"])
    box.receive("Ann <annlee+jobs@googlemail.com>", ago(20, hours=2), ["intro_request"])
    box.send("Ann <ann.lee@gmail.com>", ago(5))
    rel = box.audit(tmp_path, config(merge=(("ann@work.example", "ann.lee@gmail.com"),)))
    assert list(rel.contacts["contact"]) == ["ann@work.example"]
    assert ("glomming", "them") in flags(rel, "ann@work.example")
    m = metrics(rel, "ann@work.example")
    assert (m["sent"], m["received"], m["asks_by_them"]) == (1, 3, 3)
    assert rel.suggested_merges.empty


def test_same_name_on_several_addresses_is_suggested_never_merged(tmp_path):
    box = Box()
    box.receive("Bob Stone <bob@a.example>", ago(20))
    box.receive('"Stone, Bob" <bstone@b.example>', ago(19))
    box.send("Bob <bob@c.example>", ago(18))
    rel = box.audit(tmp_path)
    assert len(rel.contacts) == 3
    assert rel.suggested_merges.to_dict("records") == [
        {"name": "Bob Stone", "contacts": ["bob@a.example", "bstone@b.example"]}]
    assert build_export(rel)["suggested_merges"][0]["contacts"] == ["bob@a.example", "bstone@b.example"]


# labels over predictions --------------------------------------------------------------------------------------


def test_labels_override_predictions(tmp_path):
    box = Box()
    ids = [box.receive(X, ago(20, hours=k)) for k in range(3)]
    extra = box.receive(X, ago(40))
    conn = box.store(tmp_path, label=False)
    pks = [find_message(conn, i) for i in ids]
    conn.executemany(
        "INSERT INTO predictions(message, model, intro_request, handoff, thank_you, reciprocal_ask, acts)"
        " VALUES (?, 'acts-2026.05', 0.9, 0.1, 0.1, 0.1, 'intro_request')",
        [(pk,) for pk in pks],
    )
    assert ("glomming", "them") in flags(audit(conn), "x@example.com")
    save_labels(conn, {pks[0]: [], find_message(conn, extra): ["intro_request"]}, "user")
    rel = audit(conn)
    assert ("glomming", "them") not in flags(rel, "x@example.com")
    assert metrics(rel, "x@example.com")["asks_by_them"] == 3  # two predicted, one labelled
    assert build_export(rel)["model"]["version"] == "acts-2026.05"
    cards = tmp_path / "models"
    cards.mkdir()
    card = {"version": "acts-2026.05", "cv_metrics": {"macro_f1": 0.71}, "real_mail_metrics": {"macro_f1": 0.5}}
    (cards / "model-card.json").write_text(json.dumps(card))
    assert load_model_info(conn, [tmp_path / "nowhere", cards]) == {"version": "acts-2026.05", "macro_f1": 0.5}
    card["version"] = "another"
    (cards / "model-card.json").write_text(json.dumps(card))
    assert load_model_info(conn, [cards]) == {"version": "acts-2026.05", "macro_f1": None}
    conn.close()


# the export -----------------------------------------------------------------------------------------------


def test_json_export_schema(tmp_path):
    box = Box()
    for k in range(3):
        box.receive(X, ago(20, hours=k), ["intro_request"])
    data = json.loads(json.dumps(build_export(box.audit(tmp_path))))  # plain JSON types only
    assert set(data) == {"as_of", "window_days", "me", "model", "contacts", "suggested_merges"}
    assert (data["as_of"], data["window_days"], data["me"]) == ("2026-06-01", 90, ["pat@example.com"])
    assert data["model"] == {"version": None, "macro_f1": None}
    [contact] = data["contacts"]
    assert set(contact) == {"contact", "name", "status", "flags", "metrics"}
    assert (contact["contact"], contact["name"], contact["status"]) == ("x@example.com", "Xena Park", "bruised")
    schema = {"sent", "received", "asks_by_them", "asks_by_me", "gives_by_them", "gives_by_me", "last_contact",
              "median_reply_hours_them", "median_reply_hours_me", "reciprocity", "reciprocity_prev"}
    assert schema <= set(contact["metrics"]) and list(contact["metrics"]) == list(METRIC_COLUMNS)
    assert contact["metrics"]["reciprocity"] == 0.0 and contact["metrics"]["median_reply_hours_me"] is None
    glom = next(f for f in contact["flags"] if f["flag"] == "glomming")
    assert set(glom) == {"flag", "by", "evidence", "detail"} and glom["by"] == "them"
    assert glom["evidence"] == ["<m2@test>", "<m1@test>", "<m0@test>"]  # in date order


def test_empty_store_gives_an_empty_report():
    frames = Frames(empty(MESSAGE_COLUMNS), empty(RECIPIENT_COLUMNS), me=("pat@example.com",))
    rel = build_relations(frames, RelationsConfig(), AS_OF)
    assert rel.contacts.empty and rel.flags.empty
    assert build_export(rel)["contacts"] == []
    assert render_csv(rel).decode().startswith("contact,name,status,flags,")


def test_csv_is_the_contact_table(tmp_path):
    box = Box()
    for k in range(3):
        box.receive(X, ago(20, hours=k), ["intro_request"])
    box.send(Y, ago(5))
    rows = list(csv.DictReader(io.StringIO(render_csv(box.audit(tmp_path)).decode())))
    assert [r["contact"] for r in rows] == ["x@example.com", "y@example.com"]
    assert rows[0]["status"] == "bruised"
    assert set(rows[0]["flags"].split(";")) == {"glomming:them", "asks_only:them", "never_offers:them"}
    assert rows[1]["median_reply_hours_them"] == "" and rows[1]["sent"] == "1"
    assert list(rows[0])[:4] == ["contact", "name", "status", "flags"]


def test_report_files_are_written_atomically_and_privately(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("old")
    out.chmod(0o644)
    write_file_atomic(out, b"new")
    assert out.read_bytes() == b"new" and (out.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


# the command ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli_store(tmp_path):
    box = Box()
    for k in range(3):
        box.receive(X, ago(20, hours=k), ["intro_request"])
    box.send(Y, ago(5))
    box.store(tmp_path).close()
    conf = tmp_path / "config.toml"
    conf.write_text('[identity]\naddresses = ["pat@example.com"]\n')
    return ["--config", str(conf), "--db", str(tmp_path / "box.db")]


def test_report_command_json_file(tmp_path, cli_store):
    out = tmp_path / "out.json"
    r = run_cli(*cli_store, "report", "--as-of", "2026-06-01", "--format", "json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "2 contacts (1 bruised, 0 one_way, 0 drifting, 0 dormant, 1 healthy)" in r.stdout
    assert (out.stat().st_mode & 0o777) == 0o600
    data = json.loads(out.read_text())
    assert data["as_of"] == "2026-06-01" and [c["status"] for c in data["contacts"]] == ["bruised", "healthy"]


def test_report_command_csv_to_stdout_and_default_as_of(cli_store):
    r = run_cli(*cli_store, "report", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("contact,name,status,flags,sent,received,")
    r = run_cli(*cli_store, "report", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["window_days"] == 90


def test_report_formats_are_the_renderers():
    from mailaudit.cli import report
    from mailaudit.export import RENDERERS

    [fmt] = [o for o in report.params if o.name == "fmt"]
    assert list(fmt.type.choices) == list(RENDERERS)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "json", "--open"], 2, "--open opens the HTML report"),
        (["--format", "pdf"], 2, "Invalid value for '--format'"),
        (["--as-of", "1 June"], 2, "Invalid value for '--as-of'"),
        (["--out", "/nonexistent-dir/r.json"], 5, "mailaudit: error: cannot write /nonexistent-dir/r.json"),
    ],
)
def test_report_command_errors(cli_store, args, code, message):
    r = run_cli(*cli_store, "report", *args)
    assert r.returncode == code and message in r.stderr, r.stderr


# the config -----------------------------------------------------------------------------------------------


def test_config_example_documents_every_relations_key_with_its_default():
    example = tomllib.loads((ROOT / "config.example.toml").read_text())["relations"]
    defaults = RelationsConfig()
    assert set(example) == {f.name for f in fields(RelationsConfig)}
    assert all(example[k] == getattr(defaults, k) for k in example)
    assert parse_config({"relations": example}).relations == defaults


def test_relations_config_is_validated():
    assert parse_config({"relations": {"window_days": 30}}).relations.window_days == 30
    with pytest.raises(ConfigError, match="unknown key 'window' in \\[relations\\]"):
        parse_config({"relations": {"window": 30}})
    with pytest.raises(ConfigError, match="drifting_drop"):
        parse_config({"relations": {"drifting_drop": 1.5}})
    with pytest.raises(ConfigError, match="window_days"):
        parse_config({"relations": {"window_days": 0}})
