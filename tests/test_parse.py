"""Parsing: encodings, charsets, HTML, dates, addresses and defects, from small hand-built messages."""

from __future__ import annotations

import base64

from mailaudit.parse import normalise_subject, parse_message

from mailgen import msg


def test_rfc2047_headers_are_decoded():
    raw = msg(
        frm="=?utf-8?q?Ren=C3=A9e_M=C3=BCller?= <renee@example.de>",
        subject="=?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=",
    )
    pm = parse_message(raw)
    assert pm.from_name == "Renée Müller"
    assert pm.subject == "Grüße aus Köln"
    assert pm.defects == []


def test_unknown_charset_falls_back_and_is_a_defect():
    body = "Café olé, merci beaucoup pour votre aide avec le dossier.".encode("latin-1")
    raw = msg(content_type="text/plain; charset=x-no-such-charset", raw_body=body)
    pm = parse_message(raw)
    assert "Caf" in pm.body_text and "merci" in pm.body_text
    assert any(d.startswith("unknown_charset") for d in pm.defects)


def test_lying_charset_is_repaired():
    body = "Thanks for the intro to Zoë — très gentil de ta part, vraiment.".encode("cp1252")
    raw = msg(content_type="text/plain; charset=utf-8", raw_body=body)
    pm = parse_message(raw)
    assert "Zo" in pm.body_text and "\ufffd" not in pm.body_text
    assert any(d.startswith("bad_charset") for d in pm.defects)


def test_html_only_body_becomes_readable_text():
    html = "<html><body><p>Hi Pat,</p><p>Thanks <b>so much</b> for the <a href='http://x'>intro</a>!</p></body></html>"
    pm = parse_message(msg(content_type="text/html; charset=utf-8", body=html))
    assert "Thanks so much for the intro!" in pm.body_text
    assert "<p>" not in pm.body_text and "http://x" not in pm.body_text


def test_multipart_alternative_prefers_plain_and_sees_attachments():
    b64 = base64.b64encode(b"%PDF-1.4 resume").decode()
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: resume\r\nMessage-ID: <x@y>\r\n"
        b"Date: Mon, 04 May 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B1"\r\n\r\n'
        b'--B1\r\nContent-Type: multipart/alternative; boundary="B2"\r\n\r\n'
        b"--B2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain words here.\r\n"
        b"--B2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML words</p>\r\n--B2--\r\n"
        b'--B1\r\nContent-Type: application/pdf; name="Jane_Doe_resume.pdf"\r\n'
        b'Content-Disposition: attachment; filename="Jane_Doe_resume.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64.encode() + b"\r\n--B1--\r\n"
    )
    pm = parse_message(raw)
    assert pm.body_text.strip() == "Plain words here."
    assert pm.has_attachment and pm.attachment_names == ["Jane_Doe_resume.pdf"]


def test_dates_are_normalised_to_utc():
    a = parse_message(msg(date="Mon, 04 May 2026 23:30:00 -0700"))
    b = parse_message(msg(date="Tue, 05 May 2026 08:30:00 +0200"))
    assert a.date_ts is not None and b.date_ts is not None
    assert a.date_ts == b.date_ts == 1777962600  # both 2026-05-05 06:30 UTC


def test_missing_and_absurd_dates_are_defects_not_guesses():
    missing = parse_message(msg(date=None))
    assert missing.date_ts is None and "missing_date" in missing.defects
    old = parse_message(msg(date="Mon, 01 Jan 1979 10:00:00 +0000"))
    assert old.date_ts is None and "absurd_date" in old.defects
    future = parse_message(msg(date="Fri, 01 Jan 9999 10:00:00 +0000"))
    assert future.date_ts is None and "absurd_date" in future.defects
    junk = parse_message(msg(date="the day after tomorrow"))
    assert junk.date_ts is None and "unparseable_date" in junk.defects


def test_missing_message_id_is_a_defect():
    pm = parse_message(msg(message_id=None))
    assert pm.message_id is None and "missing_message_id" in pm.defects


def test_addresses_are_normalised_and_deduplicated():
    pm = parse_message(
        msg(
            frm="Pat <P.At.Morgan+jobs@GoogleMail.com>",
            to='"Smith, Jane" <Jane@Example.COM>, bob@example.com, jane@example.com',
            extra={"Cc": "Carol <carol@example.org>"},
        )
    )
    assert pm.from_addr == "patmorgan@gmail.com"
    assert pm.to == [("jane@example.com", "Smith, Jane"), ("bob@example.com", "")]
    assert pm.cc == [("carol@example.org", "Carol")]


def test_encoded_display_names_are_decoded_after_the_address_split():
    # a decoded name may hold ',', '<' and '@': split on the raw header, or the name becomes the address
    raw = (b"From: =?utf-8?q?Smith=2C_John_=3Cjohn=40evil=2Ecom=3E?= <john@example.com>\r\n"
           b"To: =?utf-8?b?w4lsb2RpZSBEdXBvbnQ=?= <elodie@example.fr>, \"Doe, Jane\" <jane@example.com>\r\n"
           b"Subject: hi\r\nMessage-ID: <a@b>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n")
    m = parse_message(raw)
    assert (m.from_addr, m.from_name) == ("john@example.com", "Smith, John <john@evil.com>")
    assert m.to == [("elodie@example.fr", "\u00c9lodie Dupont"), ("jane@example.com", "Doe, Jane")]


def test_bulk_mail_is_marked():
    assert parse_message(msg(extra={"List-Id": "<news.example.com>"})).bulk == "list-id"
    assert parse_message(msg(extra={"List-Unsubscribe": "<mailto:u@x>"})).bulk == "list-unsubscribe"
    assert parse_message(msg(extra={"Precedence": "bulk"})).bulk == "precedence-bulk"
    assert parse_message(msg(extra={"Auto-Submitted": "auto-replied"})).bulk == "auto-submitted"
    assert parse_message(msg(extra={"Auto-Submitted": "no"})).bulk == ""
    assert parse_message(msg(frm="Shop <no-reply@shop.example>")).bulk == "noreply-sender"
    assert parse_message(msg()).bulk == ""


def test_subject_normalisation_and_reply_detection():
    assert normalise_subject("Re: AW: Fwd: [jobs] SV: Coffee next week?") == "coffee next week?"
    assert parse_message(msg(subject="RE: deal")).is_reply
    assert parse_message(msg(subject="Fw: resume")).is_forward
    assert not parse_message(msg(subject="Regarding the deal")).is_reply


def test_malformed_mime_never_raises():
    raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n"
    pm = parse_message(raw)
    assert pm.from_addr == "a@b"
    assert pm.defects  # something is recorded
    assert parse_message(b"").defects


def test_deep_nesting_is_bounded():
    depth = 1000
    head = b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = []
    for i in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode())
    inner = b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    closing = b"".join(f"\r\n--b{i}--\r\n".encode() for i in reversed(range(depth)))
    pm = parse_message(head + b"".join(parts) + inner + closing)
    assert "too_deeply_nested" in pm.defects
    assert pm.from_addr == "a@example.com" and pm.subject == "deep"
    assert "bottom" in pm.body_text


def test_bad_base64_body_is_a_defect():
    raw = msg(cte="base64", raw_body=b"SGVsbG8gUGF0LCB0aGFua3Mh@@@===x\r\n")
    pm = parse_message(raw)
    assert pm.body_text.startswith("Hello Pat")
    assert any("Padding" in d or "Base64" in d or "Invalid" in d for d in pm.defects), pm.defects
