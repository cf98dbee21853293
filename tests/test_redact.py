"""`mailaudit report --redact`: a mailbox with known names, addresses, subjects, bodies and Message-IDs, reported
redacted in every format; none of those strings may appear in any output, each contact keeps one pseudonym
(across runs, and across merged addresses), and the statuses, flags, dates and metrics stay as computed."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from relgen import AS_OF, ago
from test_report_browser import ARGS, CHROMIUM, load

from mailaudit.config import Config, IdentityConfig
from mailaudit.export import render_csv, render_json
from mailaudit.ingest import import_paths
from mailaudit.redact import OWNER, REDACTED, SALT_KEY, load_pseudonyms, redact_detail, redact_page
from mailaudit.report import audit_report, render_report, write_report_set
from mailaudit.store import find_message, open_store, save_labels

from conftest import run_cli
from mailgen import msg, write_mbox

ME = ("Ottoline Brackenridge", "ottoline@brackenridge-home.example")
GLOMMER = ("Quentin Zabriskie", "quentin.zabriskie@zabriskie-labs.example")
WORK = ("Wilhelmina Okonkwo", "wokonkwo@okonkwo-consult.example")  # merged with PRIVATE: one contact
PRIVATE = ("Willa Okonkwo", "wilhelmina.private@okonkwo-family.example")
THIRD = ("Bartholomew Fairweather", "bartholomew@fairweather-trust.example")  # introduced; never a contact
TWIN_A = ("Cornelius Vandermeer", "cvandermeer@vandermeer-one.example")  # one name, two addresses: a merge
TWIN_B = ("Cornelius Vandermeer", "cornelius@vandermeer-two.example")  # suggestion, not merged
GM_THRID = "1820435338494748433"
SUBJECTS = ("Heliotrope introduction", "Marigold Ventures warm intro", "Quarterly Kumquat numbers",
            "Meet Bartholomew about Lanternfish", "Croissant supper plans")
BODIES = ("Please introduce me to the Heliotrope partners before Thursday",
          "Confidential: the Marigold acquisition closes soon",
          "Bartholomew, meet Ottoline: she runs the Lanternfish fund",
          "The Kumquat figures are attached for your eyes only")
WORDS = ("Heliotrope", "Marigold", "Kumquat", "Lanternfish", "Croissant", "Zanzibar")  # in the above
CONFIG = Config(identity=IdentityConfig(addresses=(ME[1],), merge=((WORK[1], PRIVATE[1]),)))


class Mailbox:
    """Messages with Message-IDs naming a real-looking host, and the acts each carries."""

    def __init__(self) -> None:
        self.raws: list[bytes] = []
        self.acts: dict[str, list[str]] = {}

    def add(self, frm: tuple[str, str], to: tuple[str, str], when: datetime, subject: str, body: str,
            acts: tuple[str, ...] = (), cc: tuple[str, str] | None = None, extra: dict | None = None) -> str:
        mid = f"<pk{len(self.raws)}.zanzibar@mx7.brackenridge-relay.example>"
        headers = dict(extra or {})
        if cc:
            headers["Cc"] = f"{cc[0]} <{cc[1]}>"
        self.raws.append(msg(frm=f"{frm[0]} <{frm[1]}>", to=f"{to[0]} <{to[1]}>", subject=subject, body=body,
                             date=when.strftime("%a, %d %b %Y %H:%M:%S +0000"), message_id=mid, extra=headers))
        self.acts[mid] = list(acts)
        return mid

    def store(self, folder: Path) -> Path:
        db = folder / "box.db"
        conn = open_store(db)
        try:
            import_paths(conn, [str(write_mbox(folder / "box.mbox", self.raws))], CONFIG)
            save_labels(conn, {find_message(conn, m): a for m, a in self.acts.items()}, "test")
        finally:
            conn.close()
        return db


def mailbox() -> Mailbox:
    """Quentin gloms (three asks in a day, with a Gmail thread id); Wilhelmina, under her work and her private
    address, introduces me to Bartholomew and I never follow up; Cornelius writes from two addresses."""
    box = Mailbox()
    for k in range(3):
        box.add(GLOMMER, ME, ago(20, hours=k), f"{SUBJECTS[k % 2]} #{k}", BODIES[k % 2], ("intro_request",),
                extra={"X-GM-THRID": GM_THRID})
    box.add(ME, WORK, ago(70), SUBJECTS[2], BODIES[3])
    box.add(WORK, ME, ago(69), SUBJECTS[2], BODIES[3])
    box.add(PRIVATE, ME, ago(30), SUBJECTS[3], BODIES[2], ("handoff",), cc=THIRD)
    for k, twin in enumerate((TWIN_A, TWIN_B)):
        box.add(ME, twin, ago(50 + k), SUBJECTS[4], BODIES[1])
        box.add(twin, ME, ago(49 + k), SUBJECTS[4], BODIES[1])
    return box


def secrets_of_the_mailbox() -> set[str]:
    """Every string that must not leak: names and their words over 3 characters, addresses with their local
    part and domain, subjects, bodies, Message-IDs with their parts, the Gmail thread id (decimal and hex)."""
    out = {*SUBJECTS, *BODIES, *WORDS, GM_THRID, format(int(GM_THRID), "x"), "pk0.zanzibar",
           "mx7.brackenridge-relay.example"}
    for name, addr in (ME, GLOMMER, WORK, PRIVATE, THIRD, TWIN_A, TWIN_B):
        local, _, domain = addr.partition("@")
        out |= {name, addr, local, domain, *(w for w in name.split() if len(w) > 3)}
    return {s.casefold() for s in out}


def assert_no_secret(text: str, where: str) -> None:
    low = text.casefold()
    leaked = sorted(s for s in secrets_of_the_mailbox() if s in low)
    assert not leaked, f"{where} leaks {leaked}"


@pytest.fixture
def db(tmp_path) -> Path:
    return mailbox().store(tmp_path)


@pytest.fixture
def conn(db):
    c = open_store(db)
    yield c
    c.close()


@pytest.fixture
def cli_args(db, tmp_path):
    conf = tmp_path / "config.toml"
    conf.write_text(f'[identity]\naddresses = ["{ME[1]}"]\nmerge = [["{WORK[1]}", "{PRIVATE[1]}"]]\n\n'
                    f'[report]\ndir = "{tmp_path / "reports"}"\n')
    return ["--config", str(conf), "--db", str(db)]


def redacted_page(conn: sqlite3.Connection):
    audit_report(conn, CONFIG, AS_OF - timedelta(days=7))  # a previous run: the page says what changed
    page = audit_report(conn, CONFIG, AS_OF)
    return page, redact_page(page, load_pseudonyms(conn, page.rel.me, CONFIG.identity.merge))


def test_the_mailbox_really_holds_the_secrets(conn):
    # the unredacted report shows what the redacted one must not: names, subjects, excerpts, the third person
    page, _ = redacted_page(conn)
    html = render_report(page.rel, page.inputs).decode()
    for s in (GLOMMER[0], GLOMMER[1], SUBJECTS[0], BODIES[0], THIRD[0], "open in Gmail", TWIN_A[0]):
        assert s in html, s
    assert THIRD[0] in " ".join(page.rel.flags["detail"])
    assert set(page.rel.flags["flag"]) == {"glomming", "never_offers", "no_follow_up", "no_thanks"}


def test_no_output_of_the_command_leaks_and_pseudonyms_are_stable(cli_args, tmp_path):
    outputs: dict[str, str] = {}
    runs = []
    for run in range(2):
        r = run_cli(*cli_args, "report", "--redact", "--as-of", "2026-06-01")
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith(", redacted\n")
        assert_no_secret(r.stdout, "the command's summary line")
        folder = tmp_path / "reports"
        assert sorted(p.name for p in folder.iterdir()) == [
            "latest-redacted.html", "mailaudit-2026-06-01-redacted.csv", "mailaudit-2026-06-01-redacted.html",
            "mailaudit-2026-06-01-redacted.json"]
        for path in folder.iterdir():
            outputs[f"run {run}: {path.name}"] = path.read_text()
        runs.append(json.loads((folder / "mailaudit-2026-06-01-redacted.json").read_text()))
    for fmt in ("json", "csv", "html"):
        r = run_cli(*cli_args, "report", "--redact", "--as-of", "2026-06-01", "--format", fmt)
        assert r.returncode == 0, r.stderr
        outputs[f"--format {fmt}"] = r.stdout
        out = tmp_path / f"out.{fmt}"
        r = run_cli(*cli_args, "report", "--redact", "--as-of", "2026-06-01", "--out", str(out))
        assert r.returncode == 0, r.stderr
        outputs[f"--out {out.name}"] = out.read_text()
    for where, text in outputs.items():
        assert_no_secret(text, where)
    assert "Redacted report." in outputs["--format html"] and "(redacted)</title>" in outputs["--out out.html"]
    assert json.loads(outputs["--out out.json"])["redacted"] is True
    assert outputs["--format csv"].startswith("contact,name,status,flags,")
    # stable: the same contacts under the same pseudonyms, with the same statuses, flags and metrics
    assert runs[0] == runs[1]
    assert json.loads(outputs["--format json"])["contacts"] == runs[0]["contacts"]
    assert runs[0]["me"] == [OWNER]


def test_redaction_keeps_what_a_reviewer_needs(conn):
    page, red = redacted_page(conn)
    before, after = json.loads(render_json(page.rel)), json.loads(render_json(red.rel))
    assert set(after) == {"redacted", *before}
    assert (after["as_of"], after["window_days"], after["model"]) == (before["as_of"], before["window_days"],
                                                                      before["model"])

    def shape(data):  # every contact without who it is: status, flags (kind, direction, evidence count), metrics
        return sorted(
            (c["status"], c["metrics"]["sent"], c["metrics"]["received"], json.dumps(c["metrics"], sort_keys=True),
             sorted((f["flag"], f["by"], len(f["evidence"])) for f in c["flags"]))
            for c in data["contacts"]
        )

    assert shape(after) == shape(before)
    for c in after["contacts"]:
        assert re.fullmatch(r"contact-[a-z2-7]{8}@redacted\.invalid", c["contact"])
        assert c["name"] == "Contact " + c["contact"][8:16].upper()
        for f in c["flags"]:
            assert all(re.fullmatch(r"<[a-z2-7]{8}@redacted\.invalid>", m) for m in f["evidence"])
    follow = next(f for c in after["contacts"] for f in c["flags"] if f["flag"] == "no_follow_up")
    assert follow["detail"].startswith(f"you did not follow up within 14 days on their introduction to {REDACTED} on ")
    assert [m["name"] for m in after["suggested_merges"]] == [REDACTED]
    assert len(after["suggested_merges"][0]["contacts"]) == 2
    assert render_csv(red.rel).decode().count("\n") == render_csv(page.rel).decode().count("\n")


def test_evidence_keeps_dates_and_acts_without_text_and_merged_addresses_keep_one_pseudonym(conn):
    page, red = redacted_page(conn)
    c = red.rel.contacts
    work = red.rel.flags.loc[red.rel.flags["flag"] == "no_follow_up", "contact"].iat[0]
    name = c.loc[c["contact"] == work, "name"].iat[0]
    assert len(c) == len(page.rel.contacts) == 4  # Quentin, Wilhelmina (two addresses), Cornelius twice
    evidence = list(red.inputs.evidence.values())
    assert len(evidence) == len(page.inputs.evidence) == 4
    assert sorted((e.ts, e.acts) for e in evidence) == sorted((e.ts, e.acts) for e in page.inputs.evidence.values())
    assert all(e.subject == REDACTED and e.excerpt == "" and e.gm_thrid is None for e in evidence)
    handoff = next(e for e in evidence if e.acts == ("handoff",))  # sent from her private address
    assert (handoff.from_addr, handoff.from_name) == (work, name)
    assert set(red.inputs.cards or ()) == set(c["contact"]) and set(red.inputs.activity) <= set(c["contact"])
    assert red.inputs.previous is not None and set(red.inputs.previous.statuses) == set(c["contact"])
    assert red.inputs.report.dir == REDACTED
    html = render_report(red.rel, red.inputs).decode()
    assert_no_secret(html, "the page")
    assert "the report of 25 May 2026" in html and "open in Gmail" not in html
    assert html.count(f"{name} &#8594; you") == 1  # the alias's message, shown as from the merged contact


def test_pseudonyms_are_keyed_by_a_random_salt_kept_in_the_store(tmp_path, conn):
    salt = conn.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)).fetchone()
    assert salt is None  # made on first use only
    ps = load_pseudonyms(conn, (ME[1],))
    salt = conn.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)).fetchone()[0]
    assert len(bytes.fromhex(salt)) == 32 and load_pseudonyms(conn, (ME[1],)) == ps
    (tmp_path / "other").mkdir()
    c2 = open_store(mailbox().store(tmp_path / "other"))
    try:
        elsewhere = load_pseudonyms(c2, (ME[1],))
    finally:
        c2.close()
    assert elsewhere.address(GLOMMER[1]) != ps.address(GLOMMER[1])  # no plain hash: another store, another name
    assert ps.address(ME[1]) == OWNER and ps.address(PRIVATE[1]) != ps.address(WORK[1])  # no merge given here
    merged = load_pseudonyms(conn, (ME[1],), CONFIG.identity.merge)
    assert merged.address(PRIVATE[1]) == merged.address(WORK[1].upper())
    assert merged.name(PRIVATE[1], PRIVATE[0]) == merged.name(WORK[1], WORK[0])


def test_redacted_set_is_written_beside_the_private_one(conn, tmp_path):
    page, red = redacted_page(conn)
    folder = tmp_path / "set"
    private = write_report_set(page, folder)
    shared = write_report_set(red, folder)
    assert shared.latest.name == "latest-redacted.html" and shared.html.name == "mailaudit-2026-06-01-redacted.html"
    assert GLOMMER[0] in private.latest.read_text()  # the private latest.html is not overwritten
    for path in (shared.html, shared.json, shared.csv, shared.latest):
        assert_no_secret(path.read_text(), path.name)


@pytest.mark.parametrize("detail", [
    "asked you for 3 introductions within 2 hours on 11-12 May",
    "you sent no thank-you within 14 days for their introduction on 23 Apr",
    "introduced someone to you on 20 May with no two-way history between you (2 times since 1 Apr 2025)",
    "did not follow up within 14 days on your introduction to someone on 3 May",
])
def test_rule_wording_dates_and_counts_survive(detail):
    assert redact_detail(detail) == detail


@pytest.mark.parametrize("detail, expected", [
    ("did not follow up within 14 days on your introduction to May Lin and 2 others on 3 May",
     f"did not follow up within 14 days on your introduction to {REDACTED} and 2 others on 3 May"),
    ("you did not follow up within 14 days on their introduction to dana@example.com on 3 May",
     f"you did not follow up within 14 days on their introduction to {REDACTED} on 3 May"),
    # an allow-list: a sentence no rule writes keeps only the rules' words, numbers and dates ('3 May')
    ("since 3 May, naming Zoltan O'Kovacs (May Brown) with you", f"since 3 May, {REDACTED} ({REDACTED}) with you"),
])
def test_any_word_the_rules_never_write_is_redacted(detail, expected):
    assert redact_detail(detail) == expected


@pytest.fixture(scope="module")
def chromium():
    """Debian's headless Chromium, as the browser tests drive it."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[test]' installs playwright")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (tests/apt-packages.txt lists it; tests/run.sh installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def test_the_redacted_page_in_a_real_browser_shows_no_secret(chromium, conn, tmp_path):
    _, red = redacted_page(conn)
    path = tmp_path / "redacted.html"
    path.write_bytes(render_report(red.rel, red.inputs))
    page, log = load(chromium, path)
    assert log.errors == [] and page.locator("#table-controls").is_visible()  # its script ran
    assert page.locator("#redacted").inner_text().startswith("Redacted report.")
    assert page.locator("#f-shown").inner_text() == "4 contacts"
    text = page.evaluate("document.documentElement.innerText + ' ' + document.documentElement.outerHTML")
    assert_no_secret(text, "the page in the browser")
    page.context.close()
