"""Mailbox exports on disk -> raw messages: mbox (.gz too), Google Takeout, Maildir trees, .eml files. No SQL."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailaudit.errors import ArchiveFormatError, SourceUnavailableError

_HEADER_START = re.compile(rb"^[A-Za-z0-9-]{1,76}:[ \t]?")
_SENT_NAMES = re.compile(
    r"(^|[/._ -])(sent|sent[ _-]?items|sent[ _-]?mail|sent[ _-]?messages|_sent_mail"
    r"|gesendet|envoy[ée]s|enviados|inviata)$",
    re.IGNORECASE,
)
_ESCAPED_FROM = re.compile(rb"^>(>*From )")
MAX_MESSAGE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One mailbox to import: its kind, where it is, and the folder name it stands for."""

    kind: str  # mbox | maildir | eml
    path: Path
    folder: str
    sent_folder: bool

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path.resolve()}"


def source_signature(source: Source) -> tuple[int | None, float | None]:
    """(size, mtime) that change whenever the source gains or loses mail; folders use their dirs' mtimes."""
    try:
        if source.kind == "maildir":
            dirs = [source.path / d for d in ("cur", "new") if (source.path / d).is_dir()]
            return None, max(d.stat().st_mtime for d in dirs)
        st = source.path.stat()
        return (st.st_size if source.path.is_file() else None), st.st_mtime
    except (OSError, ValueError):
        return None, None


@dataclass(slots=True)
class RawMessage:
    data: bytes
    location: str  # unique within the source: byte offset (mbox) or file name (Maildir, .eml)
    end_offset: int  # mbox: where the next message starts, the resume cursor; else 0


def is_sent_folder(name: str) -> bool:
    return bool(_SENT_NAMES.search(name.rstrip("/")))


def discover_sources(paths: list[str]) -> list[Source]:
    """Every mailbox found under the given paths; a missing path or an unknown format is an error."""
    found: list[Source] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise SourceUnavailableError(f"{raw}: no such file or directory; check the path")
        if not os.access(path, os.R_OK):
            raise SourceUnavailableError(f"{raw}: not readable; check its permissions")
        if path.is_dir():
            sources = list(_walk_dir(path, path))
            if not sources:
                raise ArchiveFormatError(
                    f"{raw}: no mailbox found inside (expected mbox files, Maildir folders or .eml files)"
                )
            found.extend(sources)
        else:
            kind = sniff_file(path)
            if kind is None:
                raise ArchiveFormatError(
                    f"{raw}: not a mailbox format mailaudit reads (mbox, .mbox.gz, Maildir, .eml)"
                )
            found.append(_file_source(path, kind, path.parent))
    return found


def sniff_file(path: Path) -> str | None:
    """'mbox' or 'eml' from the first bytes of a file, or None."""
    try:
        with _open(path) as fh:
            head = fh.read(4096)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if head.startswith(b"From "):
        return "mbox"
    first = head.lstrip(b"\r\n").split(b"\n", 1)[0]
    if _HEADER_START.match(first) and (b"\nFrom:" in head or b"\nSubject:" in head or first.startswith(b"From:")):
        return "eml"
    return None


def _file_source(path: Path, kind: str, root: Path) -> Source:
    name = path.name
    for suffix in (".gz", ".mbox", ".eml", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    rel = path.parent.relative_to(root) if path.parent != root and root in path.parents else Path()
    folder = str(rel / name) if str(rel) != "." else name
    return Source(kind=kind, path=path, folder=folder, sent_folder=is_sent_folder(name))


def _is_maildir(path: Path) -> bool:
    # exports often drop the empty new/ and tmp/: cur/ alone is enough
    return (path / "cur").is_dir()


def _walk_dir(path: Path, root: Path) -> Iterator[Source]:
    if _is_maildir(path):
        name = path.name.lstrip(".") or "INBOX"
        yield Source("maildir", path, name, is_sent_folder(name.split(".")[-1]))
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return
    eml_dir = False
    for entry in entries:
        if entry.name in {"cur", "new", "tmp"} and _is_maildir(path):
            continue
        child = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_dir(child, root)
        elif entry.is_file(follow_symlinks=False):
            kind = sniff_file(child)
            if kind == "mbox":
                yield _file_source(child, "mbox", root)
            elif kind == "eml" and not eml_dir:
                eml_dir = True
                folder = str(path.relative_to(root)) if path != root else path.name
                yield Source("eml", path, folder, is_sent_folder(path.name))


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def iter_source(source: Source, start_offset: int = 0, skip: set[str] | None = None) -> Iterator[RawMessage]:
    """Raw messages of a source, streamed; mbox resumes at `start_offset`, other kinds skip known names."""
    if source.kind == "mbox":
        yield from iter_mbox(source.path, start_offset)
    elif source.kind == "maildir":
        yield from _iter_files(_maildir_files(source.path), skip or set(), maildir=True)
    elif source.path.is_file():
        yield from _iter_files([source.path], skip or set(), maildir=False)
    else:
        files = sorted(p for p in source.path.iterdir() if p.is_file() and sniff_file(p) == "eml")
        yield from _iter_files(files, skip or set(), maildir=False)


def iter_mbox(path: Path, start_offset: int = 0) -> Iterator[RawMessage]:
    """Stream an mbox: a message starts at a 'From ' line after a blank line (or at the top).

    Memory stays flat; a truncated file yields everything before the damage; mboxrd '>From ' lines
    are unescaped.
    """
    with _open(path) as fh:
        if start_offset:
            _skip(fh, start_offset)
        offset = start_offset
        start = None
        lines: list[bytes] = []
        size = 0
        prev_blank = True
        for line in fh:
            if line.startswith(b"From ") and prev_blank:
                if start is not None:
                    yield RawMessage(_join(lines), str(start), offset)
                start, lines, size = offset, [], 0
            elif start is not None and size < MAX_MESSAGE_BYTES:
                if line.startswith(b">") and _ESCAPED_FROM.match(line):
                    line = line[1:]
                lines.append(line)
                size += len(line)
            offset += len(line)
            prev_blank = line in (b"\n", b"\r\n")
        if start is not None:
            yield RawMessage(_join(lines), str(start), offset)


def _join(lines: list[bytes]) -> bytes:
    # the blank line before the next "From " belongs to the separator, not the message
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]
    return b"".join(lines)


def _skip(fh: BinaryIO, offset: int) -> None:
    if fh.seekable() and not isinstance(fh, gzip.GzipFile):
        fh.seek(offset)
        return
    remaining = offset
    while remaining > 0:
        chunk = fh.read(min(remaining, 1 << 20))
        if not chunk:
            break
        remaining -= len(chunk)


def _maildir_files(path: Path) -> list[Path]:
    files: list[Path] = []
    for sub in ("new", "cur"):
        if not (path / sub).is_dir():
            continue
        try:
            files.extend(p for p in sorted((path / sub).iterdir()) if p.is_file() and not p.name.startswith("."))
        except OSError:
            continue
    return files


def _iter_files(files: list[Path], skip: set[str], maildir: bool) -> Iterator[RawMessage]:
    for file in files:
        name = file.name.split(":2,")[0] if maildir else file.name
        if name in skip:
            continue
        try:
            with open(file, "rb") as fh:
                data = fh.read(MAX_MESSAGE_BYTES)
        except OSError:
            yield RawMessage(b"", name, -1)  # unreadable: the caller counts it as skipped
            continue
        yield RawMessage(data, name, 0)


