"""Bytes -> email.message.Message, the tree the stdlib parser builds, without its line-by-line body loop.

The stdlib FeedParser reads every body line through a Python generator to look for MIME boundaries; that loop
was a third of the CPU of parsing a message (and parsing is most of a first sync). Here each part's headers
still go through the stdlib parser, but bodies are cut at their boundary lines with str.find. Anything the
cut does not handle exactly as FeedParser does (lone CR line ends, missing or doubled boundaries, message/*
parts, header lines it would reject) is handed to the stdlib parser whole, so the result is always the tree
`email.message_from_bytes` builds. tests/test_mime.py holds the two to the same trees.
"""

from __future__ import annotations

import email
import email.errors
import email.parser
import re
from email.message import Message
from email.policy import compat32

_MAX_DEPTH = 20  # deeper trees are rare and odd: the stdlib parser takes them
_HEADERS = email.parser.Parser(policy=compat32)
_LONE_CR = re.compile(r"\r(?!\n)")
_BLANK_LINE = re.compile(r"\n\r?\n")
_BOUNDARY_TAIL = re.compile(r"(--)?[ \t]*\r?(?:\n|\Z)")  # what may follow "--boundary" on its line


class _Odd(Exception):
    """A shape this module leaves to the stdlib parser."""


def message_from_bytes(raw: bytes) -> Message:
    """The message tree of `raw`, equal to email.message_from_bytes(raw) (compat32)."""
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser does
    if "\r" in text and _LONE_CR.search(text):  # FeedParser breaks lines at a lone CR too
        return email.message_from_bytes(raw)
    try:
        return _node(text, 0)
    except _Odd:
        return email.message_from_bytes(raw)


def _node(text: str, depth: int) -> Message:
    msg, body = _headers(text)
    maintype = msg.get_content_maintype()
    if maintype == "multipart":
        _multipart(msg, body, depth)
    elif maintype == "message":
        raise _Odd
    else:
        msg.set_payload(body)
    return msg


def _headers(text: str) -> tuple[Message, str]:
    """(the message with its headers, the body after the blank line)."""
    cut = _body_start(text)
    msg = _HEADERS.parsestr(text[:cut], headersonly=True)
    if msg._payload or msg.defects:  # a line that is no header before the blank line: FeedParser's business
        raise _Odd
    return msg, text[cut:]


def _body_start(text: str) -> int:
    """Where the body starts: after the first empty line, or at the end when there is none."""
    if text.startswith("\n"):
        return 1
    if text.startswith("\r\n"):
        return 2
    blank = _BLANK_LINE.search(text)
    return blank.end() if blank else len(text)


def _multipart(msg: Message, body: str, depth: int) -> None:
    boundary = msg.get_boundary()
    cte = str(msg.get("content-transfer-encoding", "8bit")).lower()
    if (not boundary or depth >= _MAX_DEPTH or cte not in ("7bit", "8bit", "binary")
            or msg.get_content_type() == "multipart/digest"):  # digest parts default to message/rfc822
        raise _Odd
    lines = _boundary_lines(body, "--" + boundary)
    if not lines or lines[0][2]:  # no start boundary, or a close boundary first
        raise _Odd
    if lines[0][0]:
        msg.preamble = _drop_eol(body[: lines[0][0]])
    parts: list[Message] = []
    for i, (_, end, close) in enumerate(lines):
        if close:
            msg.epilogue = body[end:]
            break
        following = lines[i + 1][0] if i + 1 < len(lines) else len(body)
        if following == end:  # doubled boundary lines: FeedParser has its own reading of those
            raise _Odd
        parts.append(_part(body[end:following], depth))
    msg.set_payload(parts)
    if not lines[-1][2]:
        msg.defects.append(email.errors.CloseBoundaryNotFoundDefect())


def _part(text: str, depth: int) -> Message:
    """A body part; the line end before the next boundary belongs to the boundary (RFC 2046)."""
    part = _node(text, depth + 1)
    if part.is_multipart():
        epilogue = part.epilogue
        part.epilogue = None if epilogue == "" else (_drop_eol(epilogue) if epilogue else epilogue)
    else:
        part.set_payload(_drop_eol(part._payload))  # get_payload() would decode surrogates
    return part


def _drop_eol(text: str) -> str:
    """The text without its last line end (FeedParser's NLCRE_eol, without a regex pass over the whole text)."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith(("\n", "\r")) else text


def _boundary_lines(body: str, sep: str) -> list[tuple[int, int, bool]]:
    """(start, end after its line end, is the close boundary) of each boundary line, up to the close one."""
    out: list[tuple[int, int, bool]] = []
    at = body.find(sep)
    while at >= 0:
        if at == 0 or body[at - 1] == "\n":
            tail = _BOUNDARY_TAIL.match(body, at + len(sep))
            if tail:
                out.append((at, tail.end(), bool(tail.group(1))))
                if tail.group(1):
                    break
        at = body.find(sep, at + len(sep))
    return out
