"""The sample mailbox bundled for `mailaudit demo`: Pat Morgan's mail, audited as of 2026-10-31."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

SAMPLE_AS_OF = datetime(2026, 10, 31)


def sample_mailbox() -> Path:
    return Path(__file__).with_name("demo.mbox")
