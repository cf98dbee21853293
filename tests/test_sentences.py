"""The sentence-level model and its mix with the message model: an act buried in a long message is found,
the sentence that carries it is the one learnt, and the mixing weight follows whichever model is right."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from mailaudit.classify import ACTS, ActBlend, Model, build_message_pipeline, load_model, mix, save_model
from mailaudit.features import MessageInput, build_features
from mailaudit.sentences import SentenceActs, split_sentences
from mailaudit.training import best_weights

FILLER = [
    "The pipeline capacity report for the third quarter is attached",
    "Gas volumes at the Henry hub were lower than the forecast",
    "Legal wants the revised confirmation language by Thursday",
    "The trading desk moved the settlement date to the fifteenth",
    "Our accountants are reconciling the storage invoices this week",
    "The credit group approved the new counterparty limits",
    "Please review the tariff filing before we send it to FERC",
    "The meeting on the Houston office lease is now at three",
]
ASKS = [
    "Could you introduce me to someone on the {c} structuring desk?",
    "Do you know anyone at {c} who could talk to me about their risk group?",
    "Would you put me in touch with your contact at {c}?",
]
COMPANIES = ["Dynegy", "Reliant", "Calpine", "Williams", "Duke", "Aquila", "Mirant", "Sempra"]


def _letter(rng: random.Random, n_filler: int, ask: str | None) -> str:
    lines = rng.sample(FILLER, n_filler)
    if ask:
        lines.insert(rng.randrange(len(lines) + 1), ask)
    return ".\n".join(lines) + "."


def _training(rng: random.Random, n: int = 160) -> tuple[list[str], np.ndarray]:
    texts, y = [], []
    for i in range(n):
        positive = i % 2 == 0
        ask = rng.choice(ASKS).format(c=rng.choice(COMPANIES)) if positive else None
        texts.append(_letter(rng, rng.randint(1, 4), ask))
        y.append([int(positive), 0, 0, 0])
    y[1][1] = y[3][2] = y[5][3] = 1  # every act needs a positive to fit
    return texts, np.array(y)


def test_sentences_split_at_punctuation_and_line_breaks_and_stop_at_the_limit():
    sentences, owner = split_sentences(["Hi Ana.\nCould you help? Thanks!", "", "one\ntwo\nthree"], limit=2)
    assert sentences == ["Hi Ana.", "Could you help?", "one", "two"]
    assert owner.tolist() == [0, 0, 2, 2]


def test_an_ask_buried_in_a_long_message_scores_like_a_short_one():
    rng = random.Random(4)
    texts, Y = _training(rng)
    model = SentenceActs().fit(texts, Y)
    ask = "Could you put me in touch with your contact at Enron?"
    long_with, long_without = _letter(rng, 8, ask), _letter(rng, 8, None)
    p = model.predict_proba([ask, long_with, long_without])[:, 0]
    assert p[1] > 0.5 > p[2]
    assert abs(p[1] - p[0]) < 1e-6  # the message is its best sentence, whatever surrounds it


def test_refinement_learns_the_asking_sentence_not_the_paragraphs_around_it():
    rng = random.Random(5)
    texts, Y = _training(rng)
    model = SentenceActs().fit(texts, Y)
    p = model.predict_proba(FILLER)[:, 0]
    # Every filler line sat in positive messages as often as in negative ones: only the ask separates them.
    assert p.max() < 0.5


def test_the_mixing_weight_follows_the_model_that_is_right():
    rng = np.random.default_rng(0)
    y = np.zeros((200, len(ACTS)), dtype=int)
    y[::4] = 1
    right = 0.35 * y + 0.65 * rng.random(y.shape)  # mostly right, not separable: any noise mixed in costs F1
    noise = rng.random(y.shape)
    real = np.ones(len(y), dtype=bool)
    assert best_weights(y, noise, right, real).tolist() == [1.0] * len(ACTS)
    assert best_weights(y, right, noise, real).tolist() == [0.0] * len(ACTS)
    assert np.allclose(mix(right, noise, np.array([0.0, 1.0, 0.5, 0.25]))[:, 1], noise[:, 1])


def test_blend_round_trips_through_skops_and_a_model_of_a_bare_pipeline_still_loads(tmp_path: Path):
    rng = random.Random(6)
    texts, Y = _training(rng, 80)
    X = build_features([MessageInput(t, "note") for t in texts])
    blend = ActBlend((0.25, 0.5, 0.5, 0.75)).fit(X, Y)
    thresholds = {a: 0.5 for a in ACTS}
    inputs = [MessageInput(t, "note") for t in texts[:10]]
    for name, estimator in (("blend", blend), ("old", build_message_pipeline().fit(X, Y))):
        before = Model(estimator, thresholds).predict(inputs)
        save_model(Model(estimator, thresholds, {}), tmp_path / name)
        after = load_model(tmp_path / name).predict(inputs)
        assert np.allclose(before, after, atol=1e-5)


def test_one_pass_sentence_rows_equal_transforming_each_sentence():
    rng = random.Random(7)
    texts, Y = _training(rng, 60)
    model = SentenceActs().fit(texts, Y)
    odd = ["", "   \n\n", "-- \n#1!", "Straße? ÜBER résumé!! café_au lait.\nİstanbul ok", "a b c. d e",
           ". ".join(f"Line {i} of the agenda" for i in range(60)), "Hi!!!...Could you put me in touch?"]
    for batch in (texts + odd, odd, odd[2:3]):
        sentences, owner = split_sentences(batch)
        rows, got_owner = model._sentence_rows(batch)
        assert got_owner.tolist() == owner.tolist()
        expected = model.words_.transform(sentences)
        assert rows.shape == expected.shape and (rows != expected).nnz == 0
    assert model._sentence_rows(odd[:2])[0].shape == (0, len(model.words_.idf_))  # no sentence at all
    assert model.predict_proba(odd[:2]).tolist() == [[0.0] * 4] * 2
