"""Label files: read and validate the user's CSV (message_id, acts), export messages to label."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mailaudit.errors import BadInputError, SourceUnavailableError

ACTS = ("intro_request", "handoff", "thank_you", "reciprocal_ask")
EXPORT_COLUMNS = [
    "message_id", "thread_id", "date", "direction", "from", "to", "subject", "own_text",
    *[f"p_{a}" for a in ACTS], "predicted", "acts",
]


@dataclass(frozen=True)
class LabelRow:
    message_id: str
    acts: tuple[str, ...]
    row: int
    group: str  # the `user` column when present (folds are split by it), else ''


def read_label_file(path: Path) -> list[LabelRow]:
    """Parse a label CSV; a missing column or an unknown act is one error naming file, row and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SourceUnavailableError(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a UTF-8 CSV file; save it as CSV UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = set(reader.fieldnames or [])
    for needed in ("message_id", "acts"):
        if needed not in columns:
            raise BadInputError(
                f"{path}: row 1: missing column '{needed}' (a label file needs message_id and acts)"
            )
    rows = []
    for number, rec in enumerate(reader, start=2):
        mid = (rec.get("message_id") or "").strip().strip("<>").strip()
        if not mid:
            raise BadInputError(f"{path}: row {number}: empty message_id")
        acts = tuple(a.strip() for a in (rec.get("acts") or "").replace(",", ";").split(";") if a.strip())
        for act in acts:
            if act not in ACTS:
                raise BadInputError(
                    f"{path}: row {number}: unknown act '{act}' (use {', '.join(ACTS)}, separated by ';')"
                )
        rows.append(LabelRow(mid, acts, number, (rec.get("user") or "").strip()))
    return rows


def write_csv_atomic(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write a CSV via a temp file and a rename, 0600: exports hold private mail excerpts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
