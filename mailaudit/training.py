"""Train and measure the act model: the shipped written corpus plus the user's labels, grouped
cross-validation, per-act thresholds, and the card that records it all."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from mailaudit import actstore
from mailaudit.classify import ACTS, ActBlend, Model, best_cut, best_thresholds, build_model, mix
from mailaudit.features import NUMERIC, MessageInput, build_features
from mailaudit.labels import LabelRow
from mailaudit.zoning import split_own_text

FOLDS = 5


@dataclass
class Dataset:
    X: pd.DataFrame
    Y: np.ndarray
    groups: np.ndarray
    real: np.ndarray  # True for labelled real mail (the figure users care about)
    missing: int = 0


@dataclass
class TrainReport:
    model: Model
    cv: dict
    real: dict
    sizes: dict = field(default_factory=dict)
    seconds: float = 0.0


def read_written_corpus(directory: Path) -> tuple[list[MessageInput], list[list[str]], list[str]]:
    """The team's hand-written corpus (JSON lines): zoned exactly like imported mail."""
    inputs, acts, ids = [], [], []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            inputs.append(
                MessageInput(
                    own_text=split_own_text(rec["body"]).own,
                    subject=rec.get("subject", ""),
                    direction=rec.get("direction", "received"),
                    is_reply=bool(rec.get("is_reply")),
                    is_forward=rec.get("subject", "").lower().startswith(("fw", "fwd")),
                    thread_pos=1 if rec.get("is_reply") else 0,
                    n_to=len(rec.get("to", [])),
                    n_cc=len(rec.get("cc", [])),
                )
            )
            acts.append(list(rec.get("acts", [])))
            ids.append(rec["id"])
    return inputs, acts, ids


def build_dataset(conn: sqlite3.Connection | None, corpus_dir: Path | None, label_rows: list[LabelRow]) -> Dataset:
    """Written corpus + stored labels + label files; files win over stored labels for the same message."""
    inputs: list[MessageInput] = []
    acts: list[list[str]] = []
    groups: list[str] = []
    real: list[bool] = []
    if corpus_dir is not None and corpus_dir.is_dir():
        w_inputs, w_acts, w_ids = read_written_corpus(corpus_dir)
        inputs += w_inputs
        acts += w_acts
        groups += [f"written:{i}" for i in w_ids]
        real += [False] * len(w_ids)
    missing = 0
    if conn is not None:
        labelled: dict[int, tuple[list[str], str]] = {
            mid: (a, "") for mid, a in actstore.load_stored_labels(conn).items()
        }
        from mailaudit.store import find_message

        for row in label_rows:
            mid = find_message(conn, row.message_id)
            if mid is None:
                missing += 1
                continue
            labelled[mid] = (list(row.acts), row.group)
        ids = sorted(labelled)
        found = actstore.load_inputs(conn, ids)
        threads = actstore.load_thread_ids(conn, ids)
        for mid in ids:
            if mid in found:
                inputs.append(found[mid])
                acts.append(labelled[mid][0])
                groups.append(f"user:{labelled[mid][1]}" if labelled[mid][1] else f"thread:{threads.get(mid)}")
                real.append(True)
    Y = np.array([[int(a in row) for a in ACTS] for row in acts], dtype=int).reshape(-1, len(ACTS))
    groups = share_text_groups([i.own_text for i in inputs], groups)
    return Dataset(build_features(inputs), Y, np.array(groups), np.array(real, dtype=bool), missing)


_WORD = re.compile(r"\w+")


def text_key(own_text: str) -> str:
    """The own text reduced to its lower-cased words: 'Thanks!' and 'thanks.' are the same text to a model."""
    return " ".join(_WORD.findall((own_text or "").lower()))


def share_text_groups(texts: list[str], groups: list[str]) -> list[str]:
    """Every set of rows with the same normalised own text moves into ONE cross-validation group, so a
    text copied into several mailboxes (or written twice) is never in train and test at once.

    The set takes the group most of its rows already have (ties: the smallest name); rows with a unique
    text keep theirs. Unioning the whole user groups a copy touches instead would chain users through
    short texts ("Thanks!", "FYI") into one component holding most of the real mail, leaving no
    usable folds. Empty own texts are not merged: they carry no text to leak."""
    members: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        if key := text_key(text):
            members.setdefault(key, []).append(i)
    out = list(groups)
    for rows in members.values():
        if len(rows) < 2:
            continue
        counts = Counter(groups[i] for i in rows)
        shared = min(counts, key=lambda g: (-counts[g], g))
        for i in rows:
            out[i] = shared
    return out


def train(data: Dataset, folds: int = FOLDS) -> TrainReport:
    """Grouped cross-validation for honest figures, then the final fit on everything."""
    started = time.perf_counter()
    if len(data.Y) < 20 or (data.Y.sum(axis=0) < 3).any():
        from mailaudit.errors import BadInputError

        raise BadInputError("too few labelled messages to train: need at least 3 examples of every act")
    message, sentences = cross_val_probabilities(data, folds)
    weights = best_weights(data.Y, message, sentences, data.real)
    thresholds = best_thresholds(data.Y, mix(message, sentences, weights))
    honest = _honest_predictions(data, message, sentences, folds)
    cv = scores(data.Y, honest)
    real = scores(data.Y[data.real], honest[data.real]) if data.real.any() else {}
    model = build_model(tuple(float(w) for w in weights)).fit(data.X, data.Y)
    sizes = {
        "messages": int(len(data.Y)),
        "real_messages": int(data.real.sum()),
        "positives": {a: int(data.Y[:, j].sum()) for j, a in enumerate(ACTS)},
        "real_positives": {a: int(data.Y[data.real, j].sum()) for j, a in enumerate(ACTS)},
    }
    card = {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_data": sizes,
        "cv_metrics": cv,
        "real_mail_metrics": real,
        "cv": f"{folds}-fold GroupKFold: written messages one group each, labelled real mail grouped by user "
              "(or thread), and every set of messages with the same own text (lower-cased words; e.g. one "
              "message copied into several mailboxes) moved into one group, the one most of its copies have, "
              "so no text is in train and test at once and no user is, apart from such copies; the mixing "
              "weights and thresholds for a fold are chosen on the other folds' out-of-fold probabilities",
        "features": ["own text word 1-2-grams (tf-idf)", "own text char_wb 3-5-grams (tf-idf, 20,000 most frequent)",
                     "subject word 1-2-grams (tf-idf)", *NUMERIC,
                     "per sentence of the own text: word 1-2-grams (tf-idf); a message scores its best sentence"],
        "model": "per act, a weighted mean of OneVsRest(LogisticRegression(liblinear dual, class_weight=balanced, "
                 "C=2)) over the whole message and a sentence-level LogisticRegression (multiple-instance: a "
                 "message's best sentence, C=1)",
        "weights": {a: float(w) for a, w in zip(ACTS, weights, strict=True)},
    }
    return TrainReport(Model(model, thresholds, card), cv, real, sizes, time.perf_counter() - started)


def _fold_ids(data: Dataset, folds: int) -> np.ndarray:
    ids = np.zeros(len(data.Y), dtype=int)
    n = min(folds, len(set(data.groups)))
    for k, (_, test) in enumerate(GroupKFold(n_splits=n).split(data.X, data.Y, data.groups)):
        ids[test] = k
    return ids


def cross_val_probabilities(data: Dataset, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of the message model and of the sentence model: every message predicted
    by models that never saw its group."""
    fold = _fold_ids(data, folds)
    message = np.zeros(data.Y.shape, dtype=float)
    sentences = np.zeros(data.Y.shape, dtype=float)
    for k in sorted(set(fold)):
        train_idx, test_idx = np.where(fold != k)[0], np.where(fold == k)[0]
        model: ActBlend = build_model().fit(data.X.iloc[train_idx], data.Y[train_idx])
        message[test_idx], sentences[test_idx] = model.parts(data.X.iloc[test_idx])
    return message, sentences


WEIGHTS = np.linspace(0.0, 1.0, 5)
MIN_REAL_POSITIVES = 10  # fewer labelled real examples of an act than this: choose its weight on all rows


def best_weights(Y: np.ndarray, message: np.ndarray, sentences: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per act, the sentence model's share that maximises F1 (at its best threshold) on labelled real mail,
    the figure users care about; on all rows where real mail has too few examples of the act."""
    out = np.zeros(len(ACTS))
    for j in range(len(ACTS)):
        rows = real if Y[real, j].sum() >= MIN_REAL_POSITIVES else np.ones(len(Y), dtype=bool)
        f1s = [best_cut(Y[rows, j], mix(message[rows, j], sentences[rows, j], w))[1] for w in WEIGHTS]
        out[j] = WEIGHTS[int(np.argmax(f1s))]
    return out


def _honest_predictions(data: Dataset, message: np.ndarray, sentences: np.ndarray, folds: int) -> np.ndarray:
    """Each fold mixed and thresholded with weights and cuts picked on the OTHER folds, so no row chooses
    its own."""
    fold = _fold_ids(data, folds)
    pred = np.zeros(data.Y.shape, dtype=int)
    for k in sorted(set(fold)):
        rest, here = fold != k, fold == k
        weights = best_weights(data.Y[rest], message[rest], sentences[rest], data.real[rest])
        mixed = mix(message, sentences, weights)
        cuts = best_thresholds(data.Y[rest], mixed[rest])
        pred[here] = mixed[here] >= np.array([cuts[a] for a in ACTS])
    return pred


def scores(Y: np.ndarray, pred: np.ndarray) -> dict:
    """Per-act precision, recall, F1 and support, with micro and macro F1."""
    per_act = {}
    tps = fps = fns = 0
    for j, act in enumerate(ACTS):
        tp = int(np.sum((pred[:, j] == 1) & (Y[:, j] == 1)))
        fp = int(np.sum((pred[:, j] == 1) & (Y[:, j] == 0)))
        fn = int(np.sum((pred[:, j] == 0) & (Y[:, j] == 1)))
        tps, fps, fns = tps + tp, fps + fp, fns + fn
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_act[act] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": tp + fn}
    micro = 2 * tps / (2 * tps + fps + fns) if tps else 0.0
    macro = float(np.mean([v["f1"] for v in per_act.values()]))
    return {"n": int(len(Y)), "micro_f1": round(micro, 4), "macro_f1": round(macro, 4), "per_act": per_act}
