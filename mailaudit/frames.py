"""Store -> DataFrames with declared columns: the messages, recipients, acts and names relations reads."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mailaudit.addresses import normalise_address
from mailaudit.config import data_dir
from mailaudit.store import ACTS, load_identity

# One row per stored message with a Date; acts are the user's label where there is one, else the model's.
MESSAGE_COLUMNS: dict[str, str] = {
    "id": "int64",
    "message_id": "object",  # without angle brackets; None when the message had none
    "thread_id": "int64",
    "ts": "int64",  # Date header, UTC epoch seconds
    "from_addr": "object",  # normalised
    "is_reply": "bool",
    "bulk": "bool",  # List-Id, List-Unsubscribe, Precedence, Auto-Submitted or a no-reply sender
    **{act: "bool" for act in ACTS},
}
RECIPIENT_COLUMNS: dict[str, str] = {"message": "int64", "addr": "object", "kind": "object"}


# each act as a 0/1 column, from the user's label where there is one, else the model's prediction
# (store.load_effective_acts, done in SQL: no per-message Python objects)
ACTS_SQL = ", ".join(f"instr(';' || coalesce(l.acts, p.acts, '') || ';', ';{a};') > 0 AS {a}" for a in ACTS)


@dataclass(frozen=True)
class Frames:
    """What relations needs from the store, and nothing else: no connection crosses this boundary."""

    messages: pd.DataFrame
    recipients: pd.DataFrame
    names: dict[str, str] = field(default_factory=dict)
    me: tuple[str, ...] = ()
    model: dict[str, object] = field(default_factory=dict)


def empty(columns: dict[str, str]) -> pd.DataFrame:
    """A frame with no rows and the declared columns."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def declare(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The frame with exactly `columns`, in order and of the declared dtypes."""
    return df.loc[:, list(columns)].astype(columns)


def load_frames(
    conn: sqlite3.Connection, extra_me: tuple[str, ...] = (), card_dirs: list[Path] | None = None
) -> Frames:
    """Read messages (with a Date), recipients, acts, names and the owner's addresses from the store.

    `extra_me` are configured owner addresses, added to the identity table's (both are normalised);
    `card_dirs` are where to find the model card (default: model_card_dirs()).
    """
    raw = read_frame(
        conn,
        "SELECT m.id, m.message_id, m.thread_id, m.date_ts AS ts, m.from_addr, m.is_reply, m.bulk, " + ACTS_SQL +
        " FROM messages m LEFT JOIN labels l ON l.message = m.id LEFT JOIN predictions p ON p.message = m.id"
        " WHERE m.date_ts IS NOT NULL ORDER BY m.id",
        shared=("from_addr", "bulk"),
    )
    raw["thread_id"] = raw["thread_id"].fillna(-raw["id"])  # unthreaded: a thread of its own
    raw["is_reply"] = raw["is_reply"].astype(bool)
    raw["bulk"] = raw["bulk"].fillna("").astype(str) != ""
    raw["from_addr"] = raw["from_addr"].fillna("")
    recipients = read_frame(conn, "SELECT message, addr, kind FROM recipients", shared=("addr", "kind"))
    names = dict(conn.execute("SELECT addr, name FROM names"))
    return Frames(
        messages=declare(raw, MESSAGE_COLUMNS),
        recipients=declare(recipients, RECIPIENT_COLUMNS),
        names=names,
        me=owner_addresses(conn, extra_me),
        model=load_model_info(conn, card_dirs),
    )


def owner_addresses(conn: sqlite3.Connection, extra_me: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The owner's addresses, normalised and sorted: the identity table's and the configured ones."""
    me = {normalise_address(a) for a in load_identity(conn)} | {normalise_address(a) for a in extra_me}
    return tuple(sorted(a for a in me if a))


def read_frame(conn: sqlite3.Connection, sql: str, shared: tuple[str, ...] = (), chunk: int = 100_000) -> pd.DataFrame:
    """A query's rows as a frame, read in chunks, each distinct value of the `shared` text columns held once.

    Addresses repeat across a million rows: pd.read_sql kept a new string per cell and every row as a tuple
    (the audit peaked at 1.3 GB at 1,000,000 messages). Dtypes are what read_sql gives: relations is unchanged.
    """
    cur = conn.execute(sql)
    names = [d[0] for d in cur.description]
    interned: dict[object, object] = {}
    parts = []
    while rows := cur.fetchmany(chunk):
        columns = dict(zip(names, zip(*rows, strict=True), strict=True))
        for name in shared:
            columns[name] = list(map(interned.setdefault, columns[name], columns[name]))
        parts.append(pd.DataFrame({n: pd.Series(v, dtype=object if n in shared else None) for n, v in columns.items()}))
    if not parts:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def model_card_dirs() -> list[Path]:
    """Where model cards live: the user's retrained model, then the shipped one (as acts.current_model looks),
    named here so the report need not import scikit-learn."""
    package = Path(__file__).resolve().parent
    return [data_dir() / "models", package / "_models", package.parent / "models"]


def load_model_info(conn: sqlite3.Connection, card_dirs: list[Path] | None = None) -> dict[str, object]:
    """The model behind the predictions: the version most predictions came from and, from the model card of
    that version, its macro F1 on real mail (else cross-validated; None when no card of that version is found)."""
    row = conn.execute("SELECT model FROM predictions GROUP BY model ORDER BY count(*) DESC LIMIT 1").fetchone()
    version = row[0] if row else None
    dirs = model_card_dirs() if card_dirs is None else card_dirs
    return {"version": version, "macro_f1": _card_macro_f1(version, dirs)}


def _card_macro_f1(version: str | None, dirs: list[Path]) -> float | None:
    if version is None:
        return None
    for directory in dirs:
        try:
            card = json.loads((directory / "model-card.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(card, dict) or card.get("version") != version:
            continue
        for key in ("real_mail_metrics", "cv_metrics"):  # real mail is the honest figure; cv mixes in written
            value = (card.get(key) or {}).get("macro_f1")
            if isinstance(value, (int, float)):
                return float(value)
    return None
