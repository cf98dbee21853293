"""Acts in the store: classify new mail, export messages to label, import labels, train, evaluate."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mailaudit import actstore
from mailaudit.classify import ACTS, Model, load_model, save_model
from mailaudit.config import data_dir
from mailaudit.errors import ModelError
from mailaudit.labels import EXPORT_COLUMNS, read_label_file, write_csv_atomic
from mailaudit.progress import Progress, SilentProgress
from mailaudit.store import find_message, save_labels, save_predictions
from mailaudit.training import TrainReport, build_dataset, scores, train

EXCERPT_CHARS = 400


def shipped_model_dir() -> Path:
    """The model shipped with the package (inside the wheel) or in the source tree's models/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_models", here.parent / "models"):
        if (candidate / "model.skops").exists():
            return candidate
    return here.parent / "models"


def user_model_dir() -> Path:
    return data_dir() / "models"


def current_model(explicit: Path | None = None) -> Model:
    """--model, else the user's retrained model, else the shipped one."""
    if explicit is not None:
        return load_model(explicit)
    user = user_model_dir()
    return load_model(user if (user / "model.skops").exists() else shipped_model_dir())


@dataclass
class ClassifySummary:
    model: str
    predicted: int = 0
    counts: dict = field(default_factory=lambda: {a: 0 for a in ACTS})


def classify_store(conn: sqlite3.Connection, model: Model, progress: Progress | None = None) -> ClassifySummary:
    """Predict every (non-bulk) message that has no prediction from this model version yet."""
    progress = progress or SilentProgress()
    summary = ClassifySummary(model.version)
    progress.begin("classify", actstore.count_unpredicted(conn, model.version), "msg")
    try:
        for batch in actstore.iter_unpredicted(conn, model.version):
            probs = model.predict([inp for _, inp in batch])
            acts = model.acts(probs)
            rows = [(mid, tuple(map(float, p)), a) for (mid, _), p, a in zip(batch, probs, acts, strict=True)]
            save_predictions(conn, model.version, rows)
            summary.predicted += len(rows)
            for a in acts:
                for act in a:
                    summary.counts[act] += 1
            progress.advance(len(rows), len(rows))
    finally:
        progress.end()
    return summary


def export_labels(
    conn: sqlite3.Connection, out: Path, uncertain: int | None = None, contact: str | None = None,
    thread: str | None = None,
) -> int:
    """Write the label spreadsheet; --uncertain N keeps the N messages the model is least sure of."""
    from mailaudit.addresses import normalise_address

    rows = actstore.load_export_rows(conn, normalise_address(contact) if contact else None, thread)
    if uncertain is not None:
        rows = [r for r in rows if r["p_intro_request"] is not None]
        rows.sort(key=_certainty)
        rows = rows[:uncertain]
    out_rows = [_export_row(r) for r in rows]
    write_csv_atomic(out, EXPORT_COLUMNS, out_rows)
    return len(out_rows)


def _certainty(row: dict) -> float:
    """Distance of the most doubtful act from 0.5: small means the model is unsure."""
    return min(abs(float(row[f"p_{a}"]) - 0.5) for a in ACTS)


def _export_row(r: dict) -> dict:
    date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["date_ts"])) if r["date_ts"] is not None else ""
    out = {
        "message_id": f"<{r['message_id']}>" if r["message_id"] else "",
        "thread_id": r["thread_id"], "date": date, "direction": r["direction"], "from": r["from"],
        "to": r["to"] or "", "subject": r["subject"], "own_text": (r["own_text"] or "")[:EXCERPT_CHARS],
        "predicted": r["predicted"] or "", "acts": "",
    }
    for a in ACTS:
        p = r[f"p_{a}"]
        out[f"p_{a}"] = "" if p is None else f"{p:.3f}"
    return out


@dataclass
class LabelImport:
    stored: int
    missing: list[str]


def import_labels(conn: sqlite3.Connection, path: Path) -> LabelImport:
    rows = read_label_file(path)
    found: dict[int, list[str]] = {}
    missing = []
    for row in rows:
        mid = find_message(conn, row.message_id)
        if mid is None:
            missing.append(row.message_id)
        else:
            found[mid] = list(row.acts)
    save_labels(conn, found, origin=str(path))
    return LabelImport(len(found), missing)


def train_model(
    conn: sqlite3.Connection | None, label_files: list[Path], out: Path | None = None,
    corpus_dir: Path | None = None,
) -> tuple[TrainReport, Path]:
    """Train on the shipped corpus plus stored and given labels; write the model and its card."""
    rows = [row for f in label_files for row in read_label_file(f)]
    corpus = corpus_dir if corpus_dir is not None else shipped_model_dir() / "training"
    data = build_dataset(conn, corpus, rows)
    report = train(data)
    report.model.card["label_files"] = [Path(f).name for f in label_files]
    report.model.card["missing_labelled_messages"] = data.missing
    target = out or user_model_dir()
    path = save_model(report.model, target)
    return report, path


@dataclass
class Evaluation:
    metrics: dict
    wrong: list[tuple[str, list[str], list[str]]]
    missing: list[str]


def evaluate(conn: sqlite3.Connection, model: Model, label_file: Path) -> Evaluation:
    """Score the model on labelled messages looked up in the store; absent ones are counted, not dropped."""
    rows = read_label_file(label_file)
    ids, truth, names, missing = [], [], [], []
    for row in rows:
        mid = find_message(conn, row.message_id)
        if mid is None:
            missing.append(row.message_id)
            continue
        ids.append(mid)
        truth.append(list(row.acts))
        names.append(row.message_id)
    inputs = actstore.load_inputs(conn, ids)
    if not ids:
        raise ModelError(f"{label_file}: none of its {len(rows)} messages is in the store; import the mailbox first")
    probs = model.predict([inputs[i] for i in ids])
    predicted = model.acts(probs)
    Y = np.array([[int(a in t) for a in ACTS] for t in truth])
    P = np.array([[int(a in p) for a in ACTS] for p in predicted])
    metrics = scores(Y, P)
    metrics["missing"] = len(missing)
    wrong = [(n, t, p) for n, t, p in zip(names, truth, predicted, strict=True) if set(t) != set(p)]
    return Evaluation(metrics, wrong, missing)
