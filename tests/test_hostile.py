"""Hostile and broken mail: each case is stored with defects (or skipped and counted), never a crash or a hang,
and nothing else in the same import is lost. Time and memory per message stay bounded."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from mailaudit.ingest import import_paths
from mailaudit.parse import parse_message
from mailaudit.store import open_store

from mailgen import msg, write_maildir, write_mbox

LIMIT_S = 20  # per hostile message, far above normal (~0.3 ms) yet catching any hang


def _timed(raw: bytes):
    t = time.perf_counter()
    pm = parse_message(raw)
    assert time.perf_counter() - t < LIMIT_S
    return pm


def _neighbours_survive(tmp_path: Path, hostile: bytes) -> None:
    """The hostile message between two normal ones: all three are stored."""
    before = msg(message_id="<before@x>", subject="before")
    after = msg(message_id="<after@x>", subject="after")
    write_mbox(tmp_path / "h.mbox", [before, hostile, after])
    conn = open_store(tmp_path / "h.db")
    s = import_paths(conn, [str(tmp_path / "h.mbox")], __import__("mailaudit.config").config.Config())
    subjects = {r[0] for r in conn.execute("SELECT subject FROM messages")}
    assert {"before", "after"} <= subjects
    assert s.new + s.skipped + s.duplicates == 3
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_fifty_thousand_recipients(tmp_path):
    to = ", ".join(f"r{i}@example.com" for i in range(50_000))
    raw = msg(to=to, message_id="<many@x>")
    pm = _timed(raw)
    assert "too_many_recipients" in pm.defects and len(pm.to) == 2000
    _neighbours_survive(tmp_path, raw)


def test_five_megabyte_header(tmp_path):
    raw = msg(extra={"X-Junk": "a" * 5_000_000}, message_id="<bighead@x>")
    pm = _timed(raw)
    assert pm.message_id == "bighead@x"
    _neighbours_survive(tmp_path, raw)


def test_hundred_megabyte_attachment(tmp_path):
    blob = base64.encodebytes(b"\x00\x01" * (50 * 1024 * 1024))
    raw = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\nMessage-ID: <big@x>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
           b'--B\r\nContent-Type: application/octet-stream; name="huge.bin"\r\nContent-Transfer-Encoding: base64\r\n'
           b'Content-Disposition: attachment; filename="huge.bin"\r\n\r\n' + blob + b"\r\n--B--\r\n")
    pm = _timed(raw)
    assert pm.body_text.strip() == "see attached" and pm.has_attachment and pm.attachment_names == ["huge.bin"]


def test_thousands_of_encoded_words():
    words = " ".join("=?utf-8?b?" + base64.b64encode(f"wörd{i}".encode()).decode() + "?=" for i in range(5000))
    pm = _timed(msg(subject=words))
    assert pm.subject.startswith("wörd0") and len(pm.subject) <= 1000


def test_nul_bytes_and_invalid_utf8_and_utf16():
    pm = _timed(msg(raw_body=b"hello\x00world \xff\xfe broken \xc3\x28 utf8\r\n"))
    assert "nul_bytes" in pm.defects and "hello" in pm.body_text and "\x00" not in pm.body_text
    utf16 = "Thanks for the intro!".encode("utf-16")
    pm = _timed(msg(content_type="text/plain; charset=utf-16", raw_body=utf16))
    assert "Thanks for the intro!" in pm.body_text
    pm = _timed(msg(content_type="text/plain; charset=utf-16", raw_body=b"\xff\xfeA\x00B"))  # odd length
    assert pm.defects


def test_unknown_charset_and_absurd_dates():
    assert "unknown_charset:body" in _timed(msg(content_type="text/plain; charset=klingon-8")).defects
    assert "absurd_date" in _timed(msg(date="Sat, 01 Jan 9999 00:00:00 +0000")).defects
    assert "absurd_date" in _timed(msg(date="Tue, 01 Jan 1901 00:00:00 +0000")).defects


def test_ten_megabytes_of_nested_html():
    html = "<div>" * 500_000 + "Thank you for the referral!" + "</div>" * 500_000
    pm = _timed(msg(content_type="text/html; charset=utf-8", body=html))
    assert pm.body_text is not None  # bounded: the html is cut at html_max_bytes before conversion


def test_mbox_with_malformed_from_lines(tmp_path):
    data = (b"From \nFrom: a@example.com\nSubject: one\nMessage-ID: <o1@x>\n\nbody one\n"
            b"From nowhere in particular\n\nFrom MAILER-DAEMON garbage date line\nFrom: b@example.com\n"
            b"Subject: two\nMessage-ID: <o2@x>\n\nbody two\n")
    (tmp_path / "bad.mbox").write_bytes(data)
    conn = open_store(tmp_path / "m.db")
    s = import_paths(conn, [str(tmp_path / "bad.mbox")], __import__("mailaudit.config").config.Config())
    subjects = sorted(r[0] for r in conn.execute("SELECT subject FROM messages"))
    assert subjects == ["one", "two"] and s.new == 2


def test_maildir_with_unreadable_entries(tmp_path):
    md = write_maildir(tmp_path / "md", [msg(message_id=f"<u{i}@x>", subject=f"s{i}") for i in range(3)])
    (md / "cur" / "dangling:2,S").symlink_to(tmp_path / "nowhere")
    (md / "cur" / "adir:2,S").mkdir()
    conn = open_store(tmp_path / "u.db")
    s = import_paths(conn, [str(md)], __import__("mailaudit.config").config.Config())
    assert s.new == 3


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "fuzz_corpus").glob("*.eml")),
                         ids=lambda p: p.name)
def test_past_crashes_stay_fixed(path):
    """Every input that once crashed the parser or the zoning is replayed here."""
    pm = _timed(path.read_bytes())
    assert isinstance(pm.defects, list)
