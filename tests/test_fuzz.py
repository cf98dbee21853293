"""Property-based fuzzing of the parser and the zoning (hypothesis, bounded examples for CI).

Any failure hypothesis finds is minimised; save it under tests/fuzz_corpus/ so test_hostile replays it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaudit.parse import parse_message
from mailaudit.zoning import fingerprint, split_own_text

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "In-Reply-To",
                                "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "List-Id",
                                "X-GM-THRID", "X-Gmail-Labels", "Auto-Submitted"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)
MIME_BITS = st.sampled_from([
    'multipart/mixed; boundary="b"', "text/plain; charset=utf-8", "text/html; charset=klingon",
    "text/plain; charset=utf-16", "message/rfc822", "base64", "quoted-printable", "=?utf-8?b?w6k=?=",
    "=?x-unknown?q?=FF?=", "--b", "--b--", "<a@b>", "Mon, 31 Feb 2026 25:61:00 +9999", "\x00", "\r\n",
])


@st.composite
def messages(draw) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, st.one_of(TEXT, MIME_BITS)), max_size=12))
    body = draw(st.lists(st.one_of(TEXT, MIME_BITS), max_size=20))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + "\r\n" + "\r\n".join(body)).encode("utf-8", "surrogatepass")


@SETTINGS
@given(messages())
def test_parser_never_raises_on_structured_garbage(raw):
    pm = parse_message(raw)
    assert isinstance(pm.own_text, str) and isinstance(pm.defects, list)
    assert len(pm.body_text) <= 65536


@SETTINGS
@given(st.binary(max_size=3000))
def test_parser_never_raises_on_random_bytes(raw):
    parse_message(raw)


@SETTINGS
@given(st.lists(st.one_of(TEXT, st.sampled_from([
    "On Mon, Bob <b@x> wrote:", "> quoted", "-----Original Message-----", "From: x\nSent: y\nTo: z\nSubject: s",
    "---------------------- Forwarded by A/HOU/ECT on 10/30/2000", "-- ", "Thanks,", "Sent from my iPhone",
    "Begin forwarded message:", "\tName@ENRON\n\t04/17/2001 04:52 PM\n\t\t To: x"])), max_size=30))
def test_zoning_own_text_is_a_part_of_the_body(lines):
    body = "\n".join(lines)
    zones = split_own_text(body)
    for line in zones.own.split("\n"):
        assert " ".join(line.split()) in " ".join(body.split())
    fingerprint(zones.quoted, quoted=True)
