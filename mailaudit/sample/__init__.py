"""The sample mailbox bundled for `mailaudit demo`."""

from __future__ import annotations

from pathlib import Path


def sample_mailbox() -> Path:
    return Path(__file__).with_name("demo.mbox")
