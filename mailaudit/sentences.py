"""Sentence-level act scores. An act usually sits in one sentence of a message ("Could you put me in touch
with someone at Dynegy?" in a page about a contract), and a model of whole messages dilutes it: on the
Enron labels its handoff F1 fell to 0.08 for own texts over 200 words. This model scores every sentence
and gives a message its best sentence's score (multiple-instance learning: a message has an act when one
of its sentences does)."""

from __future__ import annotations

import re
from itertools import chain, repeat

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from mailaudit.features import WordNgrams

MAX_SENTENCES = 40  # a message's first 40 sentences (own texts are cut at 3,000 characters anyway)
_SENTENCE = re.compile(r"[^.!?\n]*[^.!?\n\s][^.!?\n]*[.!?]*")
# A message's sentences joined by line breaks (no sentence holds one) and tokenised in one pass: the tokens
# (features._TOKEN's, as \b\w\w+\b and \w\w+ find the same runs) and a "\n" where each sentence ends.
# One regex call a message instead of one a sentence: 0.64 -> 0.3 s for 20,000 messages' 127,000 sentences.
_TOKEN_OR_END = re.compile(r"\w\w+|\n")
_END = -2


def split_sentences(texts: list[str], limit: int = MAX_SENTENCES) -> tuple[list[str], np.ndarray]:
    """Every text's sentences (a line break ends one too: mail is written in lines), and for each sentence
    the index of its text."""
    sentences: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        found = _SENTENCE.findall(text)[:limit]
        sentences.extend(found)
        owner.extend([i] * len(found))
    return sentences, np.array(owner, dtype=np.int64)


def best_per_text(scores: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """Per text, the highest score of its sentences (0 for a text without one)."""
    out = np.zeros((n_texts, scores.shape[1]), dtype=np.float64)
    np.maximum.at(out, owner, scores)
    return out


class SentenceActs(ClassifierMixin, BaseEstimator):
    """Word 1-2-gram tf-idf of each sentence, one logistic regression per act, a message scored by its best
    sentence. Training sentences first inherit their message's labels; then each positive message keeps only
    the sentence the first model scored highest and the model is fitted again, so "Thanks for the intro"
    is learnt, not the contract paragraphs around it. Word n-grams only: char n-grams of every sentence
    doubled prediction time for no gain on real mail (macro F1 0.549 words only, 0.554 with chars)."""

    def __init__(self, C: float = 1.0, min_df: int = 2, max_features: int | None = 60000) -> None:
        self.C = C
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, X: pd.DataFrame | pd.Series, Y: np.ndarray) -> SentenceActs:
        texts = _text_column(X)
        Y = np.asarray(Y).reshape(len(texts), -1)
        self.words_ = WordNgrams(min_df=self.min_df, max_features=self.max_features).fit(split_sentences(texts)[0])
        S, owner = self._sentence_rows(texts)
        coefs, intercepts = [], []
        for j in range(Y.shape[1]):
            y = Y[owner, j]
            first = self._fit_one(S, y)
            score = first.decision_function(S)
            best = np.full(len(texts), -np.inf)
            np.maximum.at(best, owner, score)
            keep = (y == 0) | (score >= best[owner])  # negatives, and the best sentence of each positive
            final = self._fit_one(S[keep], y[keep]) if 0 < y[keep].sum() < keep.sum() else first
            coefs.append(final.coef_.ravel())
            intercepts.append(float(final.intercept_[0]))
        self.coef_ = np.array(coefs, dtype=np.float32).T  # (n_features, n_acts): one sparse product scores all
        self.intercept_ = np.array(intercepts, dtype=np.float32)
        return self

    def _fit_one(self, S: sp.csr_matrix, y: np.ndarray) -> LogisticRegression:
        model = LogisticRegression(C=self.C, class_weight="balanced", solver="liblinear", dual=True, max_iter=2000)
        return model.fit(S, y)

    def predict_proba(self, X: pd.DataFrame | pd.Series) -> np.ndarray:
        """Per message and act, the probability of its best sentence."""
        texts = _text_column(X)
        S, owner = self._sentence_rows(texts)
        if not len(owner):
            return np.zeros((len(texts), len(self.intercept_)))
        logits = np.asarray(S @ self.coef_) + self.intercept_
        return best_per_text(1.0 / (1.0 + np.exp(-logits)), owner, len(texts))

    def _sentence_rows(self, texts: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """What words_.transform(split_sentences(texts)[0]) gives, and each row's text, tokenising each text once."""
        lookup = dict(self.words_.tokens_)
        lookup["\n"] = _END
        get, unknown = lookup.get, repeat(-1)
        n_sentences = np.zeros(len(texts), dtype=np.int64)
        per_text = []
        for i, text in enumerate(texts):
            found = _SENTENCE.findall(text)[:MAX_SENTENCES]
            n_sentences[i] = len(found)
            per_text.append(list(map(get, _TOKEN_OR_END.findall("\n".join(found).lower()), unknown)) if found else [])
        lengths = np.array([len(t) for t in per_text], dtype=np.int64)
        ids = np.fromiter(chain.from_iterable(per_text), dtype=np.int64, count=int(lengths.sum()))
        text_of = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        ends = ids == _END
        # a token's sentence: the sentence ends before it, plus one per earlier text that had sentences
        earlier = np.cumsum(n_sentences > 0) - (n_sentences > 0)
        row = np.cumsum(ends) + earlier[text_of]
        keep = ~ends
        n_rows = int(n_sentences.sum())
        owner = np.repeat(np.arange(len(texts), dtype=np.int64), n_sentences)
        if not n_rows:
            return sp.csr_matrix((0, len(self.words_.idf_)), dtype=np.float32), owner
        return self.words_.transform_ids(ids[keep], row[keep], n_rows), owner


def _text_column(X: pd.DataFrame | pd.Series | list[str]) -> list[str]:
    if isinstance(X, pd.DataFrame):
        return list(X["text"])
    return list(X)
