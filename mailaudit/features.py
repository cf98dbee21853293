"""The ONLY producer of model input: one row per message, the same for training and prediction."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

TEXT_MAX = 3000
NUMERIC = [
    "is_sent", "is_reply", "is_forward", "thread_pos", "n_to", "n_cc", "n_questions", "n_names",
    "resume", "n_words", "own_empty", "thanks_first",
]
COLUMNS = ["text", "subject", *NUMERIC]

_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{1,15}(?:\s[A-Z][a-z]{1,20})\b")
_RESUME = re.compile(r"\b(?:resume|résumé|cv|curriculum vitae|lebenslauf)\b", re.IGNORECASE)
_THANKS_FIRST = re.compile(r"^\W*(?:\w+\W+){0,3}(?:thanks|thank you|thx|appreciate|grateful)", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(slots=True)
class MessageInput:
    """What the model may know of one message (the own text, never quoted material)."""

    own_text: str
    subject: str
    direction: str = "received"
    is_reply: bool = False
    is_forward: bool = False
    thread_pos: int = 0
    n_to: int = 1
    n_cc: int = 0
    attachment_names: str = ""


def build_features(rows: Iterable[MessageInput]) -> pd.DataFrame:
    """A DataFrame with exactly COLUMNS: bounded text, subject and the structural numbers."""
    records = [_row(r) for r in rows]
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def _row(r: MessageInput) -> tuple:
    text = (r.own_text or "")[:TEXT_MAX]
    words = len(_WORD.findall(text))
    resume = bool(_RESUME.search(r.attachment_names or "") or _RESUME.search(r.subject or "") or _RESUME.search(text))
    return (
        text,
        r.subject or "",
        float(r.direction == "sent"),
        float(r.is_reply),
        float(r.is_forward),
        math.log1p(min(r.thread_pos, 50)),
        math.log1p(r.n_to),
        math.log1p(r.n_cc),
        float(min(text.count("?"), 5)),
        math.log1p(len(_NAME.findall(text))),
        float(resume),
        math.log1p(words),
        float(words == 0),
        float(bool(_THANKS_FIRST.match(text))),
    )
