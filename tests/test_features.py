"""The model's own vectorisers give exactly what scikit-learn's TfidfVectorizer gives (they only look terms up
faster), and prediction split over forked workers gives exactly what one process gives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from mailaudit import classify
from mailaudit.classify import ACTS, Model, build_model
from mailaudit.features import CharNgrams, MessageInput, WordNgrams, build_features

TRAIN = [
    "Could you introduce me to someone at Acme? I'd love an intro to the data team.",
    "Thanks so much for the intro to Dana, it was really helpful.",
    "Thanks so much for the call yesterday. Let me know how I can return the favor.",
    "Dana, meet Sam. Sam runs analytics at Acme; you two should talk.",
    "Please send the invoice by Friday.\n\nThanks,\nPat",
    "Do you know anyone at Initech who could talk to me about their data team?",
    "Forwarding Ana's resume: she is looking for a role at Initech. Give her a call.",
    "If I can ever help you with anything at Acme, just let me know.",
] * 3
UNSEEN = [
    "",  # no tokens at all
    "a",  # a one-letter word: no word token, one char n-gram
    "intro",  # one known token, no bigram
    "Zebra quokka intro to the data team, data team data team!",  # unknown words between known bigrams
    "Straße café naïve — ÜBER résumé; CV.  tabs\tand\nnewlines",
    "Thanks so much\n\nThanks so much",  # a bigram must not span two documents, only words of one
    "team",  # ends a document with a word that starts a known bigram ("team" ... next document)
    "data",
]


@pytest.mark.parametrize("min_df,max_features", [(1, None), (2, None), (2, 25)])
def test_word_ngrams_equal_tfidf_vectorizer(min_df, max_features):
    ref = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, max_features=max_features, sublinear_tf=True,
                          dtype=np.float32).fit(TRAIN)
    mine = WordNgrams(min_df=min_df, max_features=max_features).fit(TRAIN)
    for docs in (UNSEEN, TRAIN, UNSEEN[::-1]):
        a, b = ref.transform(docs), mine.transform(docs)
        assert a.shape == b.shape
        assert abs(a - b).max() == 0
        assert a.nnz == b.nnz


def test_char_ngrams_equal_char_wb_tfidf():
    ref = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, max_features=300, sublinear_tf=True,
                          dtype=np.float32).fit(TRAIN)
    mine = CharNgrams(min_df=2, max_features=300).fit(TRAIN)
    assert sorted(ref.vocabulary_) == sorted(mine.vocabulary_)
    order = [ref.vocabulary_[t] for t in sorted(mine.vocabulary_, key=mine.vocabulary_.get)]
    a, b = ref.transform(UNSEEN + TRAIN)[:, order], mine.transform(UNSEEN + TRAIN)
    assert np.allclose(a.toarray(), b.toarray(), atol=1e-6)


def _inputs(n: int) -> list[MessageInput]:
    texts = TRAIN + UNSEEN
    return [MessageInput(texts[i % len(texts)] + f" ref {i}", f"note {i}", "sent" if i % 3 else "received")
            for i in range(n)]


_RECORD: dict[str, Path] = {}  # where forked workers write their pid (inherited at the fork)
_REAL_WORKER = classify._predict_in_worker


def _recording_worker(inputs: list[MessageInput]) -> np.ndarray:
    with _RECORD["pids"].open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    return _REAL_WORKER(inputs)


def test_forked_prediction_equals_one_process(monkeypatch, tmp_path: Path):
    rows = _inputs(len(TRAIN))
    y = np.array([[int(k % 4 == j) for j in range(len(ACTS))] for k in range(len(rows))])
    model = Model(build_model().fit(build_features(rows), y), {a: 0.5 for a in ACTS})
    batch = _inputs(103)
    serial = model.probabilities(build_features(batch))

    pids = tmp_path / "pids"
    monkeypatch.setattr(classify, "PARALLEL_MIN_ROWS", 10)
    monkeypatch.setattr(classify, "_predict_in_worker", _recording_worker)
    monkeypatch.setitem(_RECORD, "pids", pids)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    forked = model.predict(batch)
    assert np.array_equal(forked, serial)
    workers = pids.read_text().split()  # this process predicts the first share itself, the workers the rest
    assert len(workers) == 2 and str(os.getpid()) not in workers
    assert classify._FORKED is None  # the parent does not keep the model in the worker slot


def test_person_names_are_the_same_as_the_lookbehind_first_pattern_found():
    """_NAME was reordered for speed; it must still skip sentence starts and the text's first word."""
    import re

    from mailaudit.features import _NAME

    old = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{1,15}(?:\s[A-Z][a-z]{1,20})\b")
    texts = ["Dana Lee said so. Sam Fox agreed, and Ana Ruiz too.", "Meet Sam Fox", "x Meet Sam Fox!",
             "ask Bo Li. Or Al Gore? Yes Ma Am", "Ümit Öz and Ana\nRuiz", "Mc Donald ABC Def gh Ij Kl", "", "A B"]
    assert [_NAME.findall(t) for t in texts] == [old.findall(t) for t in texts]
    assert _NAME.findall(texts[0]) == ["Ana Ruiz"]  # not the first words nor the one after a full stop


def test_term_lists_are_saved_packed_and_models_with_dicts_still_transform(tmp_path: Path):
    """A vocabulary is saved as one string (skops wrote a dict entry by entry: 1.4 s to load the model);
    the lookup built from it stays out of the saved state; older models hold the dict itself."""
    import skops.io as sio

    for vec, attr, packed in ((WordNgrams(min_df=1), "tokens_", "token_list_"),
                              (CharNgrams(min_df=2, max_features=300), "vocabulary_", "terms_")):
        vec.fit(TRAIN)
        expected = vec.transform(UNSEEN + TRAIN).toarray()
        state = vec.__getstate__()
        assert isinstance(state[packed], str) and attr not in state and "_lookup_cache" not in state
        sio.dump(vec, tmp_path / "v.skops")
        loaded = sio.load(tmp_path / "v.skops", trusted=sio.get_untrusted_types(file=tmp_path / "v.skops"))
        assert np.array_equal(loaded.transform(UNSEEN + TRAIN).toarray(), expected)
        old = type(vec)(**vec.get_params())
        old.__setstate__({**{k: v for k, v in state.items() if k != packed}, attr: dict(getattr(vec, attr))})
        assert np.array_equal(old.transform(UNSEEN + TRAIN).toarray(), expected)
