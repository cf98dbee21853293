"""The report in a real headless Chromium (Debian's `chromium`, driven by Playwright; no browser is downloaded):
the bundled sample mailbox plus hostile mail, audited as of 2026-10-31. No request beyond the file, no console
error, the attention list and the cards, XSS payloads inert, sorting and filtering, laptop and phone screenshots
(saved under tests/artifacts/), JavaScript off, and print."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from relgen import Box
from test_report import BODY_XSS, EVE, EVE_NAME, SUBJECT_XSS, raw

from mailaudit.acts import import_labels
from mailaudit.config import Config, IdentityConfig
from mailaudit.ingest import import_paths
from mailaudit.report import audit_report, render_report
from mailaudit.sample import sample_mailbox
from mailaudit.store import find_message, open_store, save_labels

from mailgen import write_mbox

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AS_OF = datetime(2026, 10, 31, tzinfo=UTC)
PAT = "Pat Morgan <pat.morgan@gmail.com>"
SAMPLE = sample_mailbox().parent
# SCENARIOS.md: the expected statuses and flags of the sample mailbox on 2026-10-31
ATTENTION = {
    "Aisha Rahman", "Ethan Cole", "Greg Holloway", "Jordan Blake", "Kevin Tran", "Marcus Bell", "Nadia Haddad",
    "Sofia Marin", "Tom Okafor", "Brandon Lowe", "Carlos Mendez", "Derek Wu", "Hannah Cho", "Lena Hartmann",
    "Owen Fitzgerald", "Rachel Kim", "Vanessa Ortiz", "Ben Adler", "Maya Patel", EVE_NAME,
}
BY_ME = {"Aisha Rahman", "Marcus Bell", "Nadia Haddad", "Sofia Marin", "Tom Okafor", "Carlos Mendez", "Hannah Cho",
         "Lena Hartmann", "Rachel Kim"}
CONTACTS = 33  # 31 people, Dana under two addresses, and Eve


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    box = Box(me=PAT)  # hostile mail in the window, from a stranger: a one-way card with evidence
    raw(box, EVE, PAT, AS_OF - timedelta(days=12), SUBJECT_XSS, BODY_XSS, ["handoff"])
    raw(box, EVE, PAT, AS_OF - timedelta(days=11), '"><img src=x onerror=window.__xss=5>', "Did you see my note?")
    hostile = write_mbox(tmp / "hostile.mbox", box.raws)
    cfg = Config(identity=IdentityConfig(addresses=("pat.morgan@gmail.com",)))
    conn = open_store(tmp / "store.db")
    try:
        import_paths(conn, [str(sample_mailbox()), str(hostile)], cfg)
        import_labels(conn, SAMPLE / "demo_labels.csv")
        save_labels(conn, {find_message(conn, mid): acts for mid, acts in box.acts.items()}, "test")
        page = audit_report(conn, cfg, AS_OF)
    finally:
        conn.close()
    path = tmp / "mailaudit-2026-10-31.html"
    path.write_bytes(render_report(page.rel, page.inputs))
    return path


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[test]' installs playwright")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (tests/apt-packages.txt lists it; tests/run.sh installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@dataclass
class Log:
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def load(browser, path: Path, width: int = 1280, height: int = 800, js: bool = True):
    """A fresh context and page on the report; every request, console error, page error and dialog is logged,
    and anything but the file itself is refused."""
    context = browser.new_context(viewport={"width": width, "height": height}, java_script_enabled=js)
    log = Log()
    url = path.as_uri()

    def route(r):
        if r.request.url == url:
            r.continue_()
        else:
            log.requests.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("request", lambda req: log.requests.append(req.url))
    page.on("console", lambda m: log.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: log.errors.append(f"page error: {exc}"))
    page.on("dialog", lambda d: (log.dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="load")
    return page, log


def visible_addresses(page) -> list[str]:
    return page.evaluate(
        "Array.from(document.querySelectorAll('#contact-table tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.querySelector('.addr').textContent)"
    )


def test_no_request_but_the_file_and_no_console_error(browser, report_file):
    page, log = load(browser, report_file)
    page.wait_for_timeout(300)
    assert log.requests == [report_file.as_uri()]
    assert log.errors == [] and log.dialogs == []
    assert page.locator("#table-controls").is_visible()  # the script ran: its CSP hash is right
    assert page.locator("#f-shown").inner_text() == f"{CONTACTS} contacts"
    page.context.close()


def test_attention_list_and_cards_show_the_expected_contacts_and_flags(browser, report_file):
    page, log = load(browser, report_file)
    items = page.locator("#attention li.item")
    names = [n.strip() for n in page.locator("#attention li.item h3 a").all_inner_texts()]
    assert set(names) == ATTENTION and len(names) == len(ATTENTION)
    assert names[0] == "Kevin Tran"  # two flags by him, one of them bruising
    statuses = page.locator("#attention li.item h3 .st").all_inner_texts()
    rank = {"bruised": 0, "one-way": 1, "drifting": 2}
    assert [rank[s] for s in statuses] == sorted(rank[s] for s in statuses)
    kevin = items.filter(has_text="Kevin Tran").inner_text()
    assert "a burst of asks" in kevin and "never offers help back" in kevin and "THEY" in kevin.upper()
    assert "Next step:" in kevin
    bruising = [n.strip() for n in page.locator("#bruising li.item h3 a").all_inner_texts()]
    assert set(bruising) == BY_ME
    marcus = page.locator("#bruising li.item").filter(has_text="Marcus Bell").inner_text()
    assert "a burst of asks" in marcus and "Slow down asks" in marcus
    ben = items.filter(has_text="Ben Adler").inner_text()
    assert "drifting" in ben and "gone quiet" in ben
    assert page.locator("#contact-table tbody tr").count() == CONTACTS
    assert page.locator("#cards article.card").count() == CONTACTS
    card = page.locator("#cards article.card").filter(has_text="kevintran@gmail.com")
    assert card.locator("svg rect.bar-theirs").count() >= 1 and card.locator("svg circle.mk-ask").count() >= 1
    assert card.locator(".msg").count() == 4 and card.locator(".act-intro_request").count() == 4
    links = card.locator("a", has_text="open in Gmail")
    assert links.count() >= 1
    assert links.first.get_attribute("href").startswith("https://mail.google.com/mail/u/0/#all/")
    page.locator("#attention li.item h3 a", has_text="Kevin Tran").click()
    assert page.evaluate("location.hash") == "#" + card.get_attribute("id")
    assert log.requests == [report_file.as_uri()] and log.errors == []  # following links loads nothing
    page.context.close()


def test_xss_in_subject_name_and_excerpt_never_runs(browser, report_file):
    page, log = load(browser, report_file)
    page.wait_for_timeout(300)
    assert log.dialogs == [] and page.evaluate("window.__xss") is None
    assert page.evaluate("document.images.length") == 0
    assert page.evaluate("document.scripts.length") == 1
    handlers = page.evaluate(
        "Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes)"
        ".some(a => a.name.startsWith('on'))).length"
    )
    assert handlers == 0
    eve = page.locator("#cards article.card").filter(has_text="eve@example.com")
    assert EVE_NAME in eve.locator("h3").inner_text()  # the display name, as text
    assert SUBJECT_XSS in eve.inner_text()  # the subject
    assert BODY_XSS in eve.locator("blockquote").first.inner_text()  # the excerpt
    page.fill("#f-q", "<img src=x onerror=window.__xss=9>")  # typed input is only matched, never rendered
    assert page.locator("#f-shown").inner_text() == f"0 of {CONTACTS} contacts"
    page.fill("#f-q", 'eve "><img')
    assert visible_addresses(page) == ["eve@example.com"]
    assert page.evaluate("document.images.length") == 0 and page.evaluate("window.__xss") is None
    assert log.errors == [] and log.dialogs == []
    page.context.close()


def test_sorting_and_filtering(browser, report_file):
    page, log = load(browser, report_file)
    page.select_option("#f-status", "drifting")
    assert set(visible_addresses(page)) == {"benadler@gmail.com", "maya.patel@cobaltstudio.example.com"}
    assert page.locator("#f-shown").inner_text() == f"2 of {CONTACTS} contacts"
    page.select_option("#f-status", "")
    page.select_option("#f-flag", "glomming:me")
    assert visible_addresses(page) == ["marcus.bell@vantagepoint.example.com"]
    page.select_option("#f-flag", "never_offers:them")
    assert set(visible_addresses(page)) == {"brandonlowe@gmail.com", "derekwu@gmail.com", "kevintran@gmail.com"}
    page.select_option("#f-flag", "")
    page.fill("#f-q", "dana")
    assert set(visible_addresses(page)) == {"dana.ruiz@northwindlabs.example.com", "danaruiz@gmail.com"}
    page.fill("#f-q", "")
    page.locator('a[data-status="dormant"]').click()  # a headline count filters the table
    assert page.locator("#f-status").input_value() == "dormant"
    assert len(visible_addresses(page)) == 3
    page.select_option("#f-status", "")
    assert len(visible_addresses(page)) == CONTACTS

    def column(index: int) -> list[str]:
        return page.evaluate(f"Array.from(document.querySelectorAll('#contact-table tbody tr'))"
                             f".map(r => r.cells[{index}].textContent.trim())")

    header = page.locator("#contact-table th button", has_text="Contact")
    header.click()
    names = [n.casefold() for n in page.evaluate(
        "Array.from(document.querySelectorAll('#contact-table tbody tr')).map(r => r.cells[0].dataset.v)")]
    assert names == sorted(names) and names[0].startswith("aisha")
    assert page.locator("#contact-table th").first.get_attribute("aria-sort") == "ascending"
    header.click()
    names = [n.casefold() for n in page.evaluate(
        "Array.from(document.querySelectorAll('#contact-table tbody tr')).map(r => r.cells[0].dataset.v)")]
    assert names == sorted(names, reverse=True)
    page.locator("#contact-table th button", has_text="Sent").click()
    sent = [int(v) for v in column(3)]
    assert sent == sorted(sent) and sent[-1] > sent[0]
    page.select_option("#f-status", "bruised")  # filtering keeps the sort order
    sent = [int(r) for r in page.evaluate(
        "Array.from(document.querySelectorAll('#contact-table tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.cells[3].textContent)")]
    assert sent == sorted(sent) and len(sent) == 9
    assert log.errors == [] and log.requests == [report_file.as_uri()]
    page.context.close()


def pixels(browser, png: bytes) -> tuple[int, int, int, int]:
    """(width, height, distinct colours, dark pixels) of a PNG, sampled, decoded by the browser itself."""
    context = browser.new_context()
    page = context.new_page()
    result = page.evaluate(
        """async (b64) => {
            const img = new Image();
            img.src = 'data:image/png;base64,' + b64;
            await img.decode();
            const c = document.createElement('canvas');
            c.width = img.width; c.height = img.height;
            const x = c.getContext('2d');
            x.drawImage(img, 0, 0);
            const d = x.getImageData(0, 0, c.width, c.height).data;
            const colours = new Set();
            let dark = 0;
            for (let i = 0; i < d.length; i += 4 * 7) {
                colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                if (d[i] + d[i + 1] + d[i + 2] < 300) dark++;
            }
            return [img.width, img.height, colours.size, dark];
        }""",
        base64.b64encode(png).decode(),
    )
    context.close()
    return tuple(result)


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_screenshots_are_not_blank_and_fit_the_width(browser, report_file, width, height):
    ARTIFACTS.mkdir(exist_ok=True)
    page, log = load(browser, report_file, width, height)
    shot = ARTIFACTS / f"report-{width}x{height}.png"
    png = page.screenshot(path=str(shot))
    w, h, colours, dark = pixels(browser, png)
    assert (w, h) == (width, height) and colours > 20 and dark > 500
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling of the page
    card = page.locator("#cards article.card").filter(has_text="kevintran@gmail.com")
    card.scroll_into_view_if_needed()
    png = page.screenshot(path=str(ARTIFACTS / f"report-{width}x{height}-card.png"))
    assert pixels(browser, png)[2] > 20
    assert log.errors == [] and log.requests == [report_file.as_uri()]
    page.context.close()


def test_with_javascript_off_the_page_reads_fine(browser, report_file):
    ARTIFACTS.mkdir(exist_ok=True)
    page, log = load(browser, report_file, js=False)
    assert page.locator("#table-controls").is_hidden()  # no dead controls
    assert page.locator("#contact-table th button").count() == 0
    rows = page.locator("#contact-table tbody tr")
    assert rows.count() == CONTACTS
    assert page.evaluate("Array.from(document.querySelectorAll('#contact-table tbody tr')).every(r => !r.hidden)")
    assert page.locator("#attention li.item").first.is_visible()
    assert page.locator("#attention li.item h3 a").first.inner_text() == "Kevin Tran"
    assert page.locator("#cards article.card").count() == CONTACTS
    page.locator("#attention li.item h3 a", has_text="Kevin Tran").click()  # plain anchors still work
    assert page.locator("#cards article.card").filter(has_text="kevintran@gmail.com").is_visible()
    png = page.screenshot(path=str(ARTIFACTS / "report-nojs-1280x800.png"))
    assert pixels(browser, png)[2] > 20
    assert log.errors == [] and log.dialogs == [] and log.requests == [report_file.as_uri()]
    page.context.close()


def test_print_hides_the_controls_and_makes_a_pdf(browser, report_file):
    ARTIFACTS.mkdir(exist_ok=True)
    page, log = load(browser, report_file)
    assert page.locator("#table-controls").is_visible() and page.locator("nav.toc").is_visible()
    page.emulate_media(media="print")
    assert page.locator("#table-controls").is_hidden() and page.locator("nav.toc").is_hidden()
    assert page.locator("#contact-table tbody tr").first.is_visible()
    pdf = page.pdf(path=str(ARTIFACTS / "report.pdf"), format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    assert log.errors == [] and log.requests == [report_file.as_uri()]
    page.context.close()
