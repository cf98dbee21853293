"""The act classifier: build the pipeline, fit it with per-act thresholds, predict, save and load with skops."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mailaudit.errors import ModelError
from mailaudit.features import NUMERIC, CharNgrams, MessageInput, WordNgrams, build_features
from mailaudit.sentences import SentenceActs

ACTS = ("intro_request", "handoff", "thank_you", "reciprocal_ask")
PARALLEL_MIN_ROWS = 8000
MODEL_FILE = "model.skops"
CARD_FILE = "model-card.json"

# Types a model file may contain; anything else is refused before loading (skops' trusted-type check).
TRUSTED_TYPES = [
    "builtins.slice",
    "numpy.dtype",
    "mailaudit.classify.ActBlend",
    "mailaudit.features.CharNgrams",
    "mailaudit.features.WordNgrams",
    "mailaudit.sentences.SentenceActs",
    "numpy.float32",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "scipy.sparse._csr.csr_matrix",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",  # in models trained before WordNgrams
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.utils._bunch.Bunch",
]


def build_message_pipeline() -> Pipeline:
    """Word and character n-grams of the own text, words of the subject, the scaled structural numbers and
    cue counts; one class-weighted logistic regression per act (probabilities without a calibration fold)."""
    columns = ColumnTransformer(
        [
            ("words", WordNgrams(min_df=2, max_features=60000), "text"),
            ("chars", CharNgrams(min_df=3, max_features=20000), "text"),
            ("subject", WordNgrams(min_df=2), "subject"),
            ("numbers", StandardScaler(), NUMERIC),
        ],
        sparse_threshold=1.0,
    )
    linear = LogisticRegression(C=2.0, class_weight="balanced", solver="liblinear", dual=True, max_iter=2000)
    model = OneVsRestClassifier(linear)
    return Pipeline([("features", columns), ("model", model)])


class ActBlend(ClassifierMixin, BaseEstimator):
    """Per act, a weighted mean of the whole-message pipeline's probability and the best sentence's
    (SentenceActs). The two fail differently: the message model sees structure and cues but dilutes an act in
    a long text, the sentence model finds it there but misses what only the whole message shows. Weights are
    chosen by cross-validation like the thresholds (on the Enron labels the sentence model weighs most for
    reciprocal_ask, least for thank_you; user-split real-mail macro F1 0.497 -> 0.548)."""

    def __init__(self, weights: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5)) -> None:
        self.weights = weights

    def fit(self, X: pd.DataFrame, Y: np.ndarray) -> ActBlend:
        self.message_ = build_message_pipeline().fit(X, Y)
        self.sentences_ = SentenceActs().fit(X, Y)
        self.weights_ = np.asarray(self.weights, dtype=np.float64)
        return self

    def parts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The message model's and the sentence model's probabilities, unmixed (for choosing weights)."""
        return self.message_.predict_proba(X), self.sentences_.predict_proba(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        message, sentences = self.parts(X)
        return mix(message, sentences, self.weights_)


def mix(message: np.ndarray, sentences: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (1.0 - weights) * message + weights * sentences


def build_model(weights: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5)) -> ActBlend:
    return ActBlend(weights)


@dataclass
class Model:
    """A fitted pipeline with its per-act thresholds and its card."""

    pipeline: ActBlend | Pipeline  # a Pipeline alone in models trained before ActBlend
    thresholds: dict[str, float]
    card: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))

    def probabilities(self, X: pd.DataFrame) -> np.ndarray:
        """Per-act probabilities for rows of build_features."""
        if len(X) == 0:
            return np.zeros((0, len(ACTS)))
        return self.pipeline.predict_proba(X)

    def predict(self, inputs: list[MessageInput]) -> np.ndarray:
        """Per-act probabilities for messages, features included. A big batch is split over the cores by
        forked workers that inherit the loaded model (nothing is pickled or loaded again); features and
        vectorising are pure Python and would otherwise leave every core but one idle. This process takes the
        first share itself: a worker idling beside it would be one more copy of the model's pages in memory."""
        jobs = min(os.cpu_count() or 1, 4)
        if len(inputs) < PARALLEL_MIN_ROWS or jobs < 2 or "fork" not in mp.get_all_start_methods():
            return self.probabilities(build_features(inputs))
        global _FORKED
        _FORKED = self
        try:
            size = -(-len(inputs) // jobs)
            chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
            with mp.get_context("fork").Pool(len(chunks) - 1) as pool:
                rest = pool.map_async(_predict_in_worker, chunks[1:])
                first = self.probabilities(build_features(chunks[0]))
                return np.vstack([first, *rest.get()])
        finally:
            _FORKED = None

    def acts(self, probs: np.ndarray) -> list[list[str]]:
        cut = np.array([self.thresholds[a] for a in ACTS])
        hits = probs >= cut
        return [[a for a, h in zip(ACTS, row, strict=True) if h] for row in hits]


_FORKED: Model | None = None  # the model a forked worker predicts with (set only around the fork)


def _predict_in_worker(inputs: list[MessageInput]) -> np.ndarray:
    assert _FORKED is not None
    return _FORKED.probabilities(build_features(inputs))


def best_thresholds(Y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Per act, the probability cut that maximises F1 on out-of-fold predictions."""
    return {act: best_cut(Y[:, j], probs[:, j])[0] for j, act in enumerate(ACTS)}


def best_cut(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The cut on a 0.025 grid that maximises F1 for one act, and that F1."""
    best, best_f1 = 0.5, -1.0
    for t in np.arange(0.1, 0.91, 0.025):
        pred = p >= t
        tp = float(np.sum(pred & (y == 1)))
        fp = float(np.sum(pred & (y == 0)))
        fn = float(np.sum(~pred & (y == 1)))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best_f1:
            best, best_f1 = float(round(t, 3)), f1
    return best, best_f1


def compact(pipeline: Pipeline | ActBlend) -> None:
    """Drop what prediction never reads: the vectorisers' lists of discarded terms (most of the file)."""
    if isinstance(pipeline, ActBlend):
        pipeline = pipeline.message_
    for _, transformer, _ in getattr(pipeline.named_steps["features"], "transformers_", []):
        if hasattr(transformer, "stop_words_"):
            del transformer.stop_words_
        if "vocabulary_" in vars(transformer):  # TfidfVectorizer: numpy ints would each become a file in the archive
            transformer.vocabulary_ = {term: int(i) for term, i in transformer.vocabulary_.items()}


def save_model(model: Model, directory: Path) -> Path:
    """Write the skops file and its card (0600) atomically; the version is the file's hash."""
    import skops.io as sio

    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (MODEL_FILE + ".tmp")
    compact(model.pipeline)
    sio.dump(model.pipeline, tmp, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    card = dict(model.card)
    card.update(
        version=f"{time.strftime('%Y%m%d', time.gmtime())}-{digest[:10]}",
        sha256=digest,
        sklearn_version=sklearn.__version__,
        thresholds=model.thresholds,
        acts=list(ACTS),
    )
    model.card = card
    card_tmp = directory / (CARD_FILE + ".tmp")
    card_tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    md_tmp = directory / "MODEL_CARD.md.tmp"
    md_tmp.write_text(render_card(card))
    for path in (tmp, card_tmp, md_tmp):
        path.chmod(0o600)
    tmp.replace(directory / MODEL_FILE)
    card_tmp.replace(directory / CARD_FILE)
    md_tmp.replace(directory / "MODEL_CARD.md")
    return directory / MODEL_FILE


def render_card(card: dict) -> str:
    """The human-readable model card beside the model."""
    lines = [f"# mailaudit act model {card.get('version')}", "",
             f"Trained {card.get('trained_at', '?')} with scikit-learn {card.get('sklearn_version')}. "
             f"{card.get('model', '')}.", "", "## Training data", ""]
    data = card.get("training_data", {})
    lines.append(f"{data.get('messages', 0)} messages, of which {data.get('real_messages', 0)} labelled real mail.")
    lines += ["", "| act | positives | of which real mail | threshold | sentence model's weight |",
              "|---|---|---|---|---|"]
    for act in ACTS:
        lines.append(f"| {act} | {data.get('positives', {}).get(act, 0)} | "
                     f"{data.get('real_positives', {}).get(act, 0)} | {card.get('thresholds', {}).get(act)} | "
                     f"{card.get('weights', {}).get(act, '-')} |")
    for title, key in (("Cross-validated, all training data", "cv_metrics"),
                       ("Cross-validated, labelled real mail only", "real_mail_metrics")):
        m = card.get(key) or {}
        if not m:
            continue
        lines += ["", f"## {title}", "", f"macro F1 {m['macro_f1']:.3f}, micro F1 {m['micro_f1']:.3f}, n = {m['n']}",
                  "", "| act | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for act, v in m["per_act"].items():
            lines.append(f"| {act} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    lines += ["", "## Method", "", str(card.get("cv", "")), "", "## Features", ""]
    lines += [f"- {f}" for f in card.get("features", [])]
    return "\n".join(lines) + "\n"


def _listed_types(exc: Exception) -> str:
    found = re.findall(r"'([^']+)'", str(exc))
    return ", ".join(sorted(found)) or "unknown types"


def load_model(directory: Path) -> Model:
    """Load a model only if it holds nothing but the allowed types and matches its card."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path, card_path = directory / MODEL_FILE, directory / CARD_FILE
    if not path.exists() or not card_path.exists():
        raise ModelError(f"{directory}: no model found; run `mailaudit train`")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: unreadable model card ({exc}); run `mailaudit train`") from None
    data = path.read_bytes()
    if card.get("sha256") != hashlib.sha256(data).hexdigest():
        raise ModelError(f"{path}: does not match its card (tampered or half-written); run `mailaudit train`")
    if card.get("sklearn_version", "").split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"{path}: trained with scikit-learn {card.get('sklearn_version')}, this is {sklearn.__version__}; "
            "run `mailaudit train` to retrain it"
        )
    # One pass: skops refuses any type outside its defaults and our allow-list while it loads (asking for the
    # untrusted types first walked the whole tree a second time: ~2 s of every weekly classify)
    try:
        pipeline = sio.loads(data, trusted=sorted(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise ModelError(f"{path}: contains types outside the allow-list ({_listed_types(exc)}); refused") from None
    except Exception as exc:
        raise ModelError(f"{path}: not a readable skops model ({type(exc).__name__}); run `mailaudit train`") from None
    thresholds = {a: float(card.get("thresholds", {}).get(a, 0.5)) for a in ACTS}
    return Model(pipeline, thresholds, card)
