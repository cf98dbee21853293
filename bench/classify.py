"""Classifier benchmark: prediction throughput (messages/s) and training time on 5,000 labelled messages.

Inputs are built from the shipped written corpus (own texts zoned as on import), repeated and lightly
varied to reach the sizes; the model is the shipped one when present, else one trained here."""

from __future__ import annotations

import argparse
import random
import time

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)
import numpy as np

from mailaudit.acts import shipped_model_dir
from mailaudit.classify import ACTS, Model, build_model, load_model
from mailaudit.features import MessageInput, build_features
from mailaudit.training import read_written_corpus


def varied(inputs: list[MessageInput], n: int, seed: int = 3) -> list[MessageInput]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        base = inputs[i % len(inputs)]
        words = base.own_text.split(" ")
        rng.shuffle(words[: max(1, len(words) // 4)])
        out.append(MessageInput(" ".join(words) + f" ref {i}", base.subject, base.direction, base.is_reply))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--predict", type=int, default=100_000)
    ap.add_argument("--train", type=int, default=5_000)
    args = ap.parse_args()
    inputs, acts, _ = read_written_corpus(shipped_model_dir() / "training")
    try:
        model = load_model(shipped_model_dir())
    except Exception:
        Y = np.array([[int(a in row) for a in ACTS] for row in acts])
        model = Model(build_model().fit(build_features(inputs), Y), {a: 0.5 for a in ACTS})

    rows = varied(inputs, args.predict)
    t = time.perf_counter()
    probs = model.predict(rows)  # what `mailaudit classify` calls: features, then the model, over the cores
    model.acts(probs)
    dt = time.perf_counter() - t
    print(f"predict: {len(rows)} messages in {dt:.1f} s = {len(rows) / dt:,.0f} messages/s (features included)")

    train_rows = varied(inputs, args.train, seed=9)
    Y = np.array([[int(a in acts[i % len(acts)]) for a in ACTS] for i in range(args.train)])
    t = time.perf_counter()
    build_model().fit(build_features(train_rows), Y)
    print(f"train: {args.train} labelled messages fitted in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
