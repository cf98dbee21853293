"""mime.message_from_bytes builds exactly the tree the stdlib parser builds, and builds it without the stdlib
parser whenever the message is an ordinary one."""

from __future__ import annotations

import email
import mailbox
import os
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaudit import mime

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "mailaudit" / "sample" / "demo.mbox"


def tree(msg: object) -> object:
    """Everything a Message holds that parsing sets: headers, envelope, preamble/epilogue, defects, payload."""
    if not isinstance(msg, Message):
        return msg
    attrs = {k: v for k, v in vars(msg).items() if k not in ("_payload", "defects", "policy")}
    payload = msg._payload
    return (attrs, [type(d).__name__ for d in msg.defects],
            [tree(p) for p in payload] if isinstance(payload, list) else payload)


def stdlib(raw: bytes) -> object:
    try:
        return tree(email.message_from_bytes(raw))
    except RecursionError as exc:
        return type(exc).__name__


def ours(raw: bytes) -> object:
    try:
        return tree(mime.message_from_bytes(raw))
    except RecursionError as exc:
        return type(exc).__name__


def fast_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(raw: bytes) -> Message:
        raise AssertionError("handed to the stdlib parser")

    monkeypatch.setattr(mime.email, "message_from_bytes", refuse)


ALTERNATIVE = (b"From: Ann <ann@example.org>\r\nTo: pat@example.com\r\nSubject: lunch\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="out"\r\n\r\nThis is a MIME message.\r\n'
               b'--out\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n'
               b"--in\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee you at noon.\r\n--out-not-a-boundary\r\n"
               b"\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>See you at noon.</p>\r\n--in--\r\n\r\n"
               b'--out\r\nContent-Type: application/pdf; name="menu.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
               b"\r\nJVBERi0=\r\n--out--  \r\nepilogue\r\n")


def test_an_ordinary_message_is_cut_without_the_stdlib_parser_into_the_same_tree(monkeypatch):
    expected = stdlib(ALTERNATIVE)
    fast_only(monkeypatch)
    msg = mime.message_from_bytes(ALTERNATIVE)
    assert tree(msg) == expected
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"]
    assert msg.preamble == "This is a MIME message." and msg.epilogue == "epilogue\r\n"
    assert msg.get_payload(0).get_payload(0).get_payload() == "See you at noon.\r\n--out-not-a-boundary\r\n"


def test_a_text_prefix_cut_inside_an_attachment_is_read_as_the_stdlib_reads_it(monkeypatch):
    """A sync fetches the first 64 KB of the text: the close boundary is often missing."""
    raw = ALTERNATIVE[: ALTERNATIVE.index(b"JVBERi0=") + 4]
    expected = stdlib(raw)
    fast_only(monkeypatch)
    msg = mime.message_from_bytes(raw)
    assert tree(msg) == expected
    assert [type(d).__name__ for d in msg.defects] == ["CloseBoundaryNotFoundDefect"]


@pytest.mark.parametrize("raw", [
    b"Subject: lone CR\r\n\r\nline one\rline two\r\n",
    b"Subject: x\r\nnot a header line\r\n\r\nbody\r\n",
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n--b\r\n\r\ndoubled\r\n--b--\r\n',
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\nno boundary at all\r\n',
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n",
    b'Content-Type: multipart/digest; boundary="b"\r\n\r\n--b\r\n\r\nSubject: d\r\n\r\nx\r\n--b--\r\n',
])
def test_odd_shapes_go_to_the_stdlib_parser(raw):
    assert ours(raw) == stdlib(raw)


def _files(root: Path):
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath) / name
            if name.endswith(".mbox"):
                box = mailbox.mbox(path)
                yield from (box.get_bytes(k) for k in box.iterkeys())
            elif not name.endswith((".md", ".tsv", ".csv", ".json", ".txt", ".zip", ".gz", ".tgz")):
                yield path.read_bytes()


def test_the_bundled_sample_and_the_crash_corpus_give_the_stdlib_trees():
    raws = [*_files(SAMPLE.parent), *_files(HERE / "fuzz_corpus")]
    assert len(raws) > 300
    assert [ours(r) for r in raws] == [stdlib(r) for r in raws]


def test_real_mail_gives_the_stdlib_trees(corpora):
    differ = [i for i, raw in enumerate(_files(corpora)) if ours(raw) != stdlib(raw)]
    assert differ == []


BOUNDARY = st.sampled_from(["b", "b1", "=_Part_0_12.34", "b'(+_,-./:=?)", "x" * 70])
EOL = st.sampled_from(["\r\n", "\n"])
LINE = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["", " ", "--", "--b", "--b--", "--b1", "--b ", "--b--\t", "-- b", "Subject: x", "\r", "\x0c",
                     "From x", ">From", "=?utf-8?q?=C3=A9?=", "\t cont"]),
)


@st.composite
def entity(draw, depth: int = 0) -> str:
    eol = draw(EOL)
    headers = draw(st.lists(st.sampled_from([
        "Subject: part", "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable",
        "Content-Disposition: attachment; filename=a.txt", "X-Folded: one" + eol + " two", "Content-Type: text/html",
        "Content-Type: message/rfc822", "no colon here", ":", " leading space", "From someone"]), max_size=3))
    if depth < 3 and draw(st.booleans()):
        b = draw(BOUNDARY)
        headers.append(f'Content-Type: multipart/{draw(st.sampled_from(["mixed", "alternative", "digest"]))};'
                       f' boundary="{b}"')
        parts = draw(st.lists(entity(depth + 1), max_size=3))
        pre = draw(st.lists(LINE, max_size=2))
        body = "".join(line + eol for line in pre)
        for part in parts:
            body += f"--{b}{draw(st.sampled_from(['', ' ', chr(9)]))}{eol}{part}{eol}"
        if draw(st.booleans()):  # else the close boundary is missing, as in a cut text prefix
            body += f"--{b}--{draw(st.sampled_from(['', ' ']))}" + eol.join(["", *draw(st.lists(LINE, max_size=2))])
    else:
        body = eol.join(draw(st.lists(LINE, max_size=4)))
    blank = draw(st.sampled_from([eol, eol, ""]))
    return "".join(h + eol for h in headers) + blank + body


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entity())
def test_any_mime_shape_gives_the_stdlib_tree(text):
    raw = text.encode("utf-8", "surrogatepass")
    assert ours(raw) == stdlib(raw)
