"""The HTML report without a browser: a self-contained page under a strict CSP, mail text escaped, the
attention lists in severity order with a next step per flag, cards with evidence and Gmail links, what changed
since the previous report, the method section, the long tail, the report set and `mailaudit report`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import sys
import tomllib
from dataclasses import fields
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape
from relgen import AS_OF, Box, ago, config

from mailaudit.config import RelationsConfig, ReportConfig, parse_config
from mailaudit.export import render_html
from mailaudit.flags import DIRECTIONS, FLAGS
from mailaudit.report import ReportInputs, audit_report, environment, read_model_card, render_report, write_report_set
from mailaudit.report_history import excerpt, load_previous_run, save_report_run
from mailaudit.store import find_message, save_labels

from conftest import run_cli
from mailgen import msg

ROOT = Path(__file__).resolve().parents[1]
X = "Xena Park <x@example.com>"
Y = "Yuri Tan <y@example.com>"
HANA = "Hana Obi <h@example.com>"
DREW = "Drew Lin <d@example.com>"
DORA = "Dora Kim <o@example.com>"
EVE_NAME = 'Eve "><img src=x onerror=window.__xss=2>'
EVE = '"Eve \\"><img src=x onerror=window.__xss=2>" <eve@example.com>'
SUBJECT_XSS = "<script>window.__xss=1</script>"
BODY_XSS = "Meet my friend <img src=x onerror=window.__xss=3> and <svg onload=window.__xss=4>"
GM_THRID = "1820435338494748433"  # X-GM-THRID as Gmail sends it: decimal; the web link wants hex


def raw(box: Box, frm: str, to: str, when, subject: str, body: str, acts=(), extra=None) -> str:
    """A message with a body of our choosing (Box writes a fixed one)."""
    mid = f"<m{len(box.raws)}@test>"
    box.raws.append(msg(frm=frm, to=to, subject=subject, body=body, date=when.strftime("%a, %d %b %Y %H:%M:%S +0000"),
                        message_id=mid, extra=extra))
    box.acts[mid] = list(acts)
    box.subjects[mid] = subject
    box.refs[mid] = []
    return mid


def scenario(box: Box | None = None) -> Box:
    """Xena gloms (bruised, by them), I never thank Yuri (bruised, by me), Eve hands someone off out of the blue
    with hostile text (one-way), Drew drifts, Dora is dormant, Hana is healthy."""
    box = box or Box()
    gm = {"X-GM-THRID": GM_THRID}
    for k in range(3):
        box.receive(X, ago(20, hours=k), ["intro_request"], subject=f"Intro to Acme #{k}", extra=gm)
    box.receive(Y, ago(100))
    box.send(Y, ago(99))
    mine = box.send(Y, ago(40), ["intro_request"], subject="Anyone at Globex?")
    box.receive(Y, ago(39), ["handoff"], reply_to=mine)
    raw(box, EVE, box.me, ago(12), SUBJECT_XSS, BODY_XSS, ["handoff"])
    raw(box, EVE, box.me, ago(11), '"><img src=x onerror=window.__xss=5>', "Did you see my note?")
    for k in range(3):
        box.send(DREW, ago(170 - k * 20))
        box.receive(DREW, ago(165 - k * 20))
    for k in range(4):
        box.send(DREW, ago(80 - k * 15))
    box.send(DORA, ago(400))
    box.receive(DORA, ago(390))
    for k in range(3):
        box.send(HANA, ago(60 - k * 10), ["thank_you"] if k == 1 else [])
        box.receive(HANA, ago(58 - k * 10))
    return box


@pytest.fixture
def store(tmp_path):
    conn = scenario().store(tmp_path)
    yield conn
    conn.close()


@pytest.fixture
def page(store):
    return audit_report(store, config(), AS_OF)


@pytest.fixture
def html(page) -> str:
    return render_report(page.rel, page.inputs).decode("utf-8")


class Page(HTMLParser):
    """The parts of a page the tests look at: every tag with its attributes, the text, the script bodies."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


def section(html: str, ident: str) -> str:
    start = html.index(f'<section id="{ident}"')
    return html[start : html.index("</section>", start)]


# a self-contained page ------------------------------------------------------------------------------------


def test_page_loads_nothing_and_runs_only_its_own_script(html):
    p = Page(html)
    [meta] = [a for a in p.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    csp = dict(d.strip().split(" ", 1) for d in meta["content"].split(";"))
    assert csp["default-src"] == "'none'" and csp["img-src"] == "data:" and csp["style-src"] == "'unsafe-inline'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
    [script] = p.scripts
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert csp["script-src"] == f"'sha256-{digest}'"  # only this exact script may run
    assert all(a.get("src") is None for _, a in p.tags)  # nothing is fetched: no src at all
    assert {t for t, _ in p.tags}.isdisjoint({"img", "iframe", "object", "embed", "form", "base", "video", "audio"})
    assert [a["href"] for a in p.all("link")] == ["data:,"]  # the favicon request is answered in place
    for _, attrs in p.tags:
        href = attrs.get("href")
        if href is not None and attrs.get("rel") != "icon":
            assert href.startswith("#") or re.fullmatch(r"https://mail\.google\.com/mail/u/0/#all/[0-9a-f]+", href)
    assert "@import" not in html and "url(" not in html


def test_text_from_mail_is_escaped_everywhere(html):
    p = Page(html)
    assert len(p.scripts) == 1 and len(p.all("img")) == 0 and len(p.all("svg")) >= 2
    assert not [a for _, a in p.tags if any(k.startswith("on") for k in a)]  # no event handler got in
    text = "".join(p.text)
    for payload in (SUBJECT_XSS, EVE_NAME, "<img src=x onerror=window.__xss=3>", "<svg onload=window.__xss=4>"):
        assert payload in text  # shown to the reader as text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "Eve &#34;&gt;&lt;img src=x onerror=window.__xss=2&gt;" in html  # also inside attributes (data-q, title)


def test_script_is_static_and_builds_no_html():
    js = environment().loader.get_source(environment(), "report.js")[0]
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "fetch",
                  "XMLHttpRequest", "http"):
        assert risky not in js


# content ------------------------------------------------------------------------------------------------


def test_headline_has_date_window_and_counts(html):
    head = html[html.index('<header class="top">') : html.index("</header>")]
    assert "Your relationships as of 1 Jun 2026" in head
    assert "Window: 3 Mar 2026 to 31 May 2026 (90 days), compared with 3 Dec 2025 to 2 Mar 2026" in head
    counts = dict(re.findall(r'data-status="(\w+)"><b>(\d+)</b>', head))
    assert counts == {"bruised": "2", "one_way": "1", "drifting": "1", "dormant": "1", "healthy": "1"}
    assert "No earlier report is stored" in head


def test_needs_attention_is_by_severity_with_who_and_next_step(html):
    att = section(html, "attention")
    order = [m for m in re.findall(r'<h3><a href="#c\d+">([^<]+)</a>', att)]
    assert order == ["Xena Park", "Yuri Tan", str(escape(EVE_NAME)), "Drew Lin"]
    xena = att[: att.index("Yuri Tan")]
    assert "a burst of asks" in xena and '<span class="who">they</span>' in xena
    assert "Next step: Answer the one request you can help with best, and tell Xena Park the others" in xena
    assert "Asked you for 3 introductions within 2 hours" in xena  # the audit's own detail, as a sentence
    assert "Next step: Thank Yuri Tan: a short note saying what their help led to." in att
    drew = att[att.index("Drew Lin") :]
    assert "Drew Lin has gone quiet" in drew  # drifting: a next step chosen from the status
    bruising = section(html, "bruising")
    assert re.findall(r'<h3><a href="#c\d+">([^<]+)</a>', bruising) == ["Yuri Tan"]
    assert '<span class="who">you</span> <strong>no thank-you for help</strong>' in bruising
    assert "a burst of asks" not in bruising


def test_every_flag_has_words_and_a_next_step_each_way():
    steps = environment().get_template("steps.html").module
    seen = set()
    for flag in FLAGS:
        assert str(steps.flag_title(flag)).strip()
        for by in DIRECTIONS:
            step = str(steps.next_step(flag, by, "Sam")).strip()
            assert len(step) > 20, (flag, by)
            seen.add(step)
    assert len(seen) == len(FLAGS) * len(DIRECTIONS)  # each flag and direction has its own advice
    for status in ("drifting", "dormant"):
        assert "Sam" in str(steps.status_step(status, "Sam", 1, 5))


def test_every_contact_is_in_the_table_with_name_address_and_status(page, html):
    rows = re.findall(r'<tr data-s="(\w+)" data-f="([^"]*)" data-q="([^"]*)">', html)
    assert len(rows) == len(page.rel.contacts) == 6
    by_addr = {q.rsplit(" ", 1)[-1]: (s, f) for s, f, q in rows}
    assert by_addr["x@example.com"] == ("bruised", "glomming:them never_offers:them")
    assert by_addr["y@example.com"] == ("bruised", "no_thanks:me")
    assert by_addr["o@example.com"] == ("dormant", "")
    assert '<a href="#c0">Xena Park</a> <span class="addr">x@example.com</span>' in html
    assert 'data-q="eve &#34;&gt;&lt;img src=x onerror=window.__xss=2&gt; eve@example.com"' in html


def test_cards_show_chart_metrics_and_evidence_threads(page, html):
    card = html[html.index('id="c0"') : html.index("</article>", html.index('id="c0"'))]
    assert "Xena Park" in card and "x@example.com" in card
    assert card.count('class="bar-theirs"') == 1 and card.count('class="mk-ask"') == 1  # 3 asks in one month
    assert "May 2026: you sent 0 messages (0 asks, 0 gives); they sent 3 messages (3 asks, 0 gives)" in card
    assert f'href="https://mail.google.com/mail/u/0/#all/{int(GM_THRID):x}"' in card
    assert card.count('class="msg"') == 3 and "Xena Park &#8594; you" in card
    assert "intro request" in card and "Message 0 of the scenario, with words of its own." in card
    assert "evidence for: a burst of asks (they); never offers help back (they)" in card
    cards = section(html, "cards")
    eve = cards[cards.index("eve@example.com</span>") :]
    eve = eve[: eve.index("</article>")]
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in eve and "&lt;svg onload=window.__xss=4&gt;" in eve
    assert "open in Gmail" not in eve  # not from Gmail: no link


def test_overview_chart_has_every_contact_coloured_by_status(page, html):
    ov = section(html, "overview")
    dots = re.findall(r'<circle class="dot s-(\w+)" cx="([\d.]+)" cy="([\d.]+)"', ov)
    assert len(dots) == 6
    assert [s for s, _, _ in dots][-2:] == ["bruised", "bruised"]  # the troubled are drawn last, on top
    titles = re.findall(r"<title>([^<]+)</title></circle>", ov)
    xena = next(t for t in titles if "x@example.com" in t)
    assert xena.endswith("bruised, 3 messages, balance -1.00")  # three asks to me: I am the one giving


def test_method_lists_window_rules_settings_model_and_skipped_mail(store, tmp_path):
    box_cfg = config(window_days=60, glomming_burst_asks=4)
    page = audit_report(store, box_cfg, AS_OF)
    html = render_report(page.rel, page.inputs).decode()
    method = section(html, "method")
    for f in fields(RelationsConfig):
        assert f"[relations] {f.name}</td>" in method
    for f in fields(ReportConfig):
        assert f"[report] {f.name}</td>" in method
    assert "<td>[relations] window_days</td><td>60</td>" in method
    assert "4 or more asks within 24 hours" in method and "The 60 days before 1 Jun 2026" in method
    assert "No model predictions were used" in method
    assert re.search(r"Left out: 0 bulk or automated .* and 0 without a usable Date", method)
    assert "from your labels, 0 from the model" in method


def test_model_version_and_its_real_mail_f1_come_from_the_card(store, tmp_path):
    pk = find_message(store, "<m0@test>")
    store.execute("DELETE FROM labels WHERE message = ?", (pk,))
    store.execute("INSERT INTO predictions VALUES (?, 'acts-7', 0.9, 0, 0, 0, 'intro_request')", (pk,))
    cards = tmp_path / "cards"
    cards.mkdir()
    card = {"version": "acts-7", "cv_metrics": {"macro_f1": 0.75},
            "real_mail_metrics": {"macro_f1": 0.4788, "n": 2521, "per_act": {"intro_request": {"f1": 0.28}}}}
    (cards / "model-card.json").write_text(json.dumps(card))
    info = read_model_card("acts-7", [tmp_path / "none", cards])
    assert info["real_f1"] == 0.4788 and info["cv_f1"] == 0.75 and info["per_act"] == {"intro_request": 0.28}
    assert read_model_card("other", [cards]) == {} and read_model_card(None, [cards]) == {}
    page = audit_report(store, config(), AS_OF)
    inputs = ReportInputs(**{**page.inputs.__dict__, "model_card": info})
    method = section(render_report(page.rel, inputs).decode(), "method")
    assert "Model acts-7: measured macro F1 0.48 on 2521 labelled real messages" in method
    assert "0.75 on all its training data" in method and "intro request 0.28" in method
    assert "1 from the model" in method


def test_shipped_model_card_is_found():
    card = json.loads((ROOT / "models" / "model-card.json").read_text())
    info = read_model_card(card["version"])
    assert info["real_f1"] == card["real_mail_metrics"]["macro_f1"]


def test_what_changed_since_the_previous_report(store):
    save_report_run(store, "2026-05-25", {"x@example.com": "healthy", "h@example.com": "bruised",
                                           "d@example.com": "drifting", "gone@example.com": "one_way"}, {})
    save_report_run(store, "2026-06-01", {"x@example.com": "one_way"}, {})  # today's: replaced, not compared
    page = audit_report(store, config(), AS_OF)
    head = render_report(page.rel, page.inputs).decode()
    head = head[head.index('<header class="top">') : head.index("</header>")]
    assert "Since the report of 25 May 2026:" in head
    assert re.search(r'newly bruised \(2\):\s*<a href="#c0">Xena Park</a> <span class="note">\(was healthy\)</span>, '
                     r'<a href="#c1">Yuri Tan</a> <span class="note">\(new contact\)</span></li>', head)
    assert "newly one-way (1)" in head and "newly dormant (1)" in head
    assert re.search(r'recovered \(1\):\s*<a href="#c\d+">Hana Obi</a> <span class="note">\(was bruised\)', head)
    assert "Drew Lin" not in head  # drifting then and now
    assert '<b>2</b>bruised <span class="delta">(+1)</span>' in head
    later = load_previous_run(store, "2026-06-08")
    assert later.as_of == "2026-06-01" and later.statuses["x@example.com"] == "bruised"
    assert later.flags["y@example.com"] == "no_thanks:me"
    assert store.execute("SELECT count(*) FROM report_runs WHERE as_of = '2026-06-01'").fetchone()[0] == 1


def test_history_ignores_unreadable_records(store):
    store.execute("INSERT INTO report_runs(as_of, created_at, contacts) VALUES ('2026-01-01', 'x', 'not json')")
    assert load_previous_run(store, "2026-02-01") is None
    assert load_previous_run(store, "2026-01-01") is None  # only reports dated before


def test_without_javascript_everything_is_already_on_the_page(page, html):
    p = Page(html)
    [controls] = [a for t, a in p.tags if a.get("id") == "table-controls"]
    assert "hidden" in controls  # the filter form appears only when the script runs
    rows = re.findall(r'<tr data-s="(\w+)"', html)
    assert rows == list(page.rel.contacts["status"])  # all rows, worst first, rendered by the server
    assert not [t for t, a in p.tags if t == "noscript" or "hidden" in a and a.get("id") != "table-controls"]
    assert "<button" not in html  # sort buttons are added by the script, never dead without it
    assert "@media print" in html and "@media (max-width:640px)" in html


def test_long_tail_is_collapsed(store):
    cfg = config()
    cfg = type(cfg)(identity=cfg.identity, relations=cfg.relations,
                    report=ReportConfig(max_cards=2, max_attention=1, max_evidence=1))
    page = audit_report(store, cfg, AS_OF)
    html = render_report(page.rel, page.inputs).decode()
    assert html.count('<article class="card') == 2
    assert "the other 4 are in the table above and in the JSON export" in html
    assert "3 more contacts need attention" in html
    assert html.count('<tr data-s=') == 6
    card = html[html.index('id="c0"') : html.index("</article>")]
    assert card.count('class="msg"') == 1 and "2 older evidence messages are in the JSON export" in card


def test_render_html_works_from_the_audit_alone(page):
    html = render_html(page.rel).decode()
    assert "Xena Park" in html and "Evidence (Message-IDs): &lt;m2@test&gt;" in html
    assert "No earlier report is stored" in html


def test_excerpt_collapses_whitespace_and_cuts_at_a_word():
    assert excerpt("  Hello\n\n  there  ", 40) == "Hello there"
    assert excerpt("one two three four five six", 14) == "one two three…"
    assert excerpt("x" * 30, 10) == "x" * 10 + "…"


# the report set and the command -----------------------------------------------------------------------------


def test_report_set_is_written_atomically_and_privately(page, tmp_path):
    folder = tmp_path / "out" / "reports"
    files = write_report_set(page, folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "latest.html", "mailaudit-2026-06-01.csv", "mailaudit-2026-06-01.html", "mailaudit-2026-06-01.json"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert files.latest.read_bytes() == files.html.read_bytes()
    assert json.loads(files.json.read_text())["as_of"] == "2026-06-01"
    assert files.csv.read_text().startswith("contact,name,status,flags,")


@pytest.fixture
def cli_args(tmp_path):
    box = scenario()
    box.store(tmp_path).close()
    conf = tmp_path / "config.toml"
    conf.write_text(f'[identity]\naddresses = ["pat@example.com"]\n\n[report]\ndir = "{tmp_path / "weekly"}"\n')
    return ["--config", str(conf), "--db", str(tmp_path / "box.db")]


def test_report_command_writes_the_set_into_the_configured_folder(cli_args, tmp_path):
    r = run_cli(*cli_args, "report", "--as-of", "2026-06-01")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "weekly"
    assert f"wrote {out / 'mailaudit-2026-06-01.html'} (and latest.html, mailaudit-2026-06-01.json," in r.stdout
    assert "6 contacts (2 bruised, 1 one_way, 1 drifting, 1 dormant, 1 healthy)" in r.stdout
    assert "Xena Park" in (out / "latest.html").read_text()
    r = run_cli(*cli_args, "report", "--as-of", "2026-06-08")
    assert "Since the report of 1 Jun 2026" in (out / "latest.html").read_text()


def test_report_command_html_to_file_and_stdout(cli_args, tmp_path):
    out = tmp_path / "page.html"
    r = run_cli(*cli_args, "report", "--as-of", "2026-06-01", "--out", str(out))  # the suffix picks html
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text().startswith("<!DOCTYPE html>")
    r = run_cli(*cli_args, "report", "--as-of", "2026-06-01", "--format", "html")
    assert r.returncode == 0 and "<title>mailaudit report, 1 Jun 2026</title>" in r.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="the BROWSER variable is how webbrowser is pointed at a stub")
def test_open_hands_the_written_page_to_the_browser(cli_args, tmp_path):
    seen = tmp_path / "opened.txt"
    stub = tmp_path / "browser.sh"
    stub.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    stub.chmod(0o755)
    env = dict(os.environ, BROWSER=f"{stub} %s")
    r = run_cli(*cli_args, "report", "--as-of", "2026-06-01", "--open", env=env)
    assert r.returncode == 0, r.stderr
    assert seen.read_text().strip() == (tmp_path / "weekly" / "mailaudit-2026-06-01.html").as_uri()


@pytest.mark.parametrize("args", [["--format", "json", "--open"], ["--format", "html", "--open"]])
def test_open_needs_an_html_file(cli_args, args):
    r = run_cli(*cli_args, "report", *args)
    assert r.returncode == 2 and "--open opens the HTML report" in r.stderr


def test_unwritable_report_folder_is_one_line_and_status_5(cli_args, tmp_path):
    blocker = tmp_path / "weekly"
    blocker.write_text("a file where the folder should be")
    r = run_cli(*cli_args, "report")
    assert r.returncode == 5 and r.stderr.startswith(f"mailaudit: error: cannot create the report folder {blocker}")


def test_config_example_documents_every_report_key_with_its_default():
    example = tomllib.loads((ROOT / "config.example.toml").read_text())["report"]
    defaults = ReportConfig()
    assert {k for k in example if k != "email"} == {f.name for f in fields(ReportConfig)}
    assert all(example[f.name] == getattr(defaults, f.name) for f in fields(ReportConfig))
    assert parse_config({"report": {"max_cards": 5}}).report.max_cards == 5


def test_as_of_changes_the_window_of_the_page(store):
    page = audit_report(store, config(), AS_OF + timedelta(days=7))
    html = render_report(page.rel, page.inputs).decode()
    assert "as of 8 Jun 2026" in html and "Window: 10 Mar 2026 to 7 Jun 2026" in html


def test_labels_are_what_the_page_shows(store):
    # the evidence badges follow the user's labels, as every count does
    pk = find_message(store, "<m1@test>")
    save_labels(store, {pk: ["intro_request", "thank_you"]}, "user")
    page = audit_report(store, config(), AS_OF)
    html = render_report(page.rel, page.inputs).decode()
    card = html[html.index('id="c0"') : html.index("</article>", html.index('id="c0"'))]
    assert 'act-thank_you">thank you</span>' in card
