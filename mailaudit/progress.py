"""How long work reports progress: a protocol the library calls; the CLI picks a bar, log lines or silence."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, label: str, total: int | None, unit: str) -> None:
        """A new stage starts; total is in `unit`s (None when unknown)."""

    def advance(self, amount: int, items: int = 0) -> None:
        """`amount` more units done, covering `items` more messages."""

    def note(self, text: str) -> None:
        """A milestone worth one line under cron (a file finished)."""

    def end(self) -> None:
        """The stage is over."""


class SilentProgress:
    """For --quiet, tests and library callers that want nothing shown."""

    def begin(self, label: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, amount: int, items: int = 0) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass
