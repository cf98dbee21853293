"""The classifier end to end on a small store: label round trip, train, classify, evaluate, overrides,
and the refusal of tampered or foreign model files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mailaudit.classify import ACTS, load_model
from mailaudit.errors import BadInputError, ModelError
from mailaudit.labels import read_label_file
from mailaudit.store import find_message, load_effective_acts, open_store

from conftest import run_cli
from mailgen import msg, rfc_date, write_mbox

PEOPLE = ["Ana", "Ben", "Chidi", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
TEXTS = {
    "intro_request": ["Do you know anyone at {c} who could talk to me about their data team?",
                      "Could you introduce me to someone in the {c} hiring group?",
                      "Would you put me in touch with your contact at {c}? I'd love an intro."],
    "handoff": ["{p}, meet Sam. Sam runs analytics at {c}; you two should talk.",
                "I'm forwarding {p}'s resume; she is looking for a role at {c}. Please give her a call.",
                "Please contact {p} at {c}, she can help you with that."],
    "thank_you": ["Thank you so much for the introduction to {p} yesterday, it was really helpful.",
                  "Thanks for taking the time to meet me at {c} last week, I appreciate it.",
                  "Many thanks for the referral to {p}! We had a great call."],
    "reciprocal_ask": ["If I can ever help you with anything at {c}, just let me know.",
                       "How can I return the favor? Anything I can do for you, {p}?",
                       "Next time you need anything from {c}, it's on me."],
    "": ["Please send me the {c} invoice by Friday.\n\nThanks,\nPat",
         "The meeting with {c} moved to 3pm, see the attached agenda.",
         "Let me know if you have questions about the {c} report I sent."],
}


def _corpus(directory: Path) -> Path:
    directory.mkdir()
    lines = []
    n = 0
    for act, texts in TEXTS.items():
        for t in texts:
            for i, p in enumerate(PEOPLE):
                n += 1
                body = t.format(p=p, c=f"Company{i}")
                lines.append(json.dumps({"id": f"t-{n}", "direction": "received", "subject": f"note {n}",
                                         "is_reply": False, "body": body, "acts": [act] if act else [],
                                         "to": ["x@example.com"], "cc": []}))
    (directory / "tiny.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def _mailbox(tmp_path: Path) -> Path:
    raws = []
    for i, (act, texts) in enumerate(TEXTS.items()):
        for j, t in enumerate(texts):
            body = t.format(p=PEOPLE[(i + j) % len(PEOPLE)], c=f"Firm{i}{j}")
            raws.append(msg(frm=f"P{i}{j} <p{i}{j}@example.com>", subject=f"s{i}{j}", body=body + "\n",
                            message_id=f"<{act or 'none'}{j}@example.com>", date=rfc_date(2026, 3, 1 + i, j)))
    return write_mbox(tmp_path / "inbox.mbox", raws)


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    db = base / "s.db"
    assert run_cli("--db", str(db), "import", str(_mailbox(base))).returncode == 0
    corpus = _corpus(base / "corpus")
    out = base / "model"
    res = run_cli("--db", str(db), "train", "--corpus", str(corpus), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "macro F1" in res.stdout and "written to" in res.stdout
    return db, out, corpus


@pytest.fixture
def trained(trained_once, tmp_path):
    """A private copy of the trained store and model for each test."""
    import shutil

    db, model, corpus = trained_once
    shutil.copy(db, tmp_path / "s.db")
    shutil.copytree(model, tmp_path / "model")
    return tmp_path / "s.db", tmp_path / "model", corpus


def test_train_classify_is_incremental_and_label_round_trip(trained, tmp_path):
    db, model, corpus = trained
    card = json.loads((model / "model-card.json").read_text())
    assert set(card["thresholds"]) == set(ACTS) and card["training_data"]["messages"] == 180
    res = run_cli("--db", str(db), "classify", "--model", str(model))
    assert res.returncode == 0, res.stderr
    assert "classified 15 messages" in res.stdout
    again = run_cli("--db", str(db), "classify", "--model", str(model))
    assert "classified 0 messages" in again.stdout

    export = tmp_path / "to_label.csv"
    res = run_cli("--db", str(db), "label", "export", "--out", str(export), "--uncertain", "5")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(export.open()))
    assert len(rows) == 5 and rows[0]["acts"] == "" and rows[0]["p_thank_you"] != ""
    assert (export.stat().st_mode & 0o777) == 0o600
    # the user labels one message against the model's view: the label must win
    rows[0]["acts"] = "handoff;thank_you"
    with export.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:1])
    res = run_cli("--db", str(db), "label", "import", str(export))
    assert res.returncode == 0 and "stored 1 labels" in res.stdout
    conn = open_store(db)
    mid = find_message(conn, rows[0]["message_id"])
    assert load_effective_acts(conn)[mid] == ["handoff", "thank_you"]

    labels = tmp_path / "eval.csv"
    labels.write_text("message_id,acts\n<thank_you0@example.com>,thank_you\nintro_request1@example.com,intro_request\n"
                      "<none0@example.com>,\n<not-in-store@example.com>,handoff\n")
    res = run_cli("--db", str(db), "evaluate", "--labels", str(labels), "--json", "--model", str(model))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 3 and out["missing"] == 1
    assert set(out["per_act"]) == set(ACTS) and {"macro_f1", "micro_f1"} <= set(out)
    text = run_cli("--db", str(db), "-v", "evaluate", "--labels", str(labels), "--model", str(model))
    assert "1 labelled messages are not in the store" in text.stdout

    # retraining with the stored label includes it
    res = run_cli("--db", str(db), "train", "--corpus", str(corpus), "--out", str(tmp_path / "m2"))
    card2 = json.loads((tmp_path / "m2" / "model-card.json").read_text())
    assert card2["training_data"]["real_messages"] == 1


def test_tampered_model_is_refused(trained):
    _, model, _ = trained
    data = bytearray((model / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        load_model(model)


def test_model_with_untrusted_types_is_refused_even_with_a_matching_card(trained, tmp_path):
    import hashlib

    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    _, model, _ = trained
    evil = Pipeline([("f", FunctionTransformer(print))])
    path = model / "model.skops"
    sio.dump(evil, path)
    card = json.loads((model / "model-card.json").read_text())
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (model / "model-card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="allow-list"):
        load_model(model)
    res = run_cli("--db", str(tmp_path / "x.db"), "classify", "--model", str(model))
    assert res.returncode == 10 and "allow-list" in res.stderr and "Traceback" not in res.stderr


def test_model_from_another_sklearn_version_asks_to_retrain(trained):
    _, model, _ = trained
    card = json.loads((model / "model-card.json").read_text())
    card["sklearn_version"] = "0.24.2"
    (model / "model-card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="mailaudit train"):
        load_model(model)


def test_label_file_errors_name_file_row_and_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("message_id,acts\n<a@x>,thank_you\n<b@x>,thanks\n")
    with pytest.raises(BadInputError, match=r"bad.csv: row 3: unknown act 'thanks'"):
        read_label_file(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,acts\n<a@x>,thank_you\n")
    with pytest.raises(BadInputError, match="missing column 'message_id'"):
        read_label_file(nocol)
    res = run_cli("--db", str(tmp_path / "s.db"), "label", "import", str(bad))
    assert res.returncode == 6 and res.stderr.count("\n") == 1 and "row 3" in res.stderr
    ok = tmp_path / "ok.csv"
    ok.write_text("message_id,acts,comment\na@x, thank_you ; handoff ,hello\n<b@x>,\n")
    rows = read_label_file(ok)
    assert [(r.message_id, r.acts) for r in rows] == [("a@x", ("thank_you", "handoff")), ("b@x", ())]


def test_identical_texts_under_different_users_share_a_fold(tmp_path):
    """A message copied into two mailboxes (two Enron users) must sit in one fold, or CV tests on a text it
    trained on; a text of its own keeps its user's group, and written messages keep one group each."""
    from mailaudit.training import _fold_ids, build_dataset

    copy = "Give Scott a call at x36577, he can help you with the ISDA question."
    raws = [msg(frm=f"U{i} <u{i}@example.com>", subject=f"s{i}", body=body + "\n", message_id=f"<m{i}@example.com>",
                date=rfc_date(2026, 3, 1 + i))
            for i, body in enumerate([copy, f"{copy.upper()}!!", *(f"Unrelated note number {i}." for i in range(8))])]
    db = tmp_path / "s.db"
    assert run_cli("--db", str(db), "import", str(write_mbox(tmp_path / "in.mbox", raws))).returncode == 0
    labels = tmp_path / "labels.csv"
    users = ["alice", "bob", *(f"user{i % 4}" for i in range(8))]
    labels.write_text("message_id,user,acts\n" + "".join(
        f"<m{i}@example.com>,{u},{'handoff' if i < 2 else ''}\n" for i, u in enumerate(users)))
    corpus = _corpus(tmp_path / "corpus")
    conn = open_store(db)
    data = build_dataset(conn, corpus, read_label_file(labels))
    texts = list(data.X["text"])
    first, second = texts.index(copy), next(i for i, t in enumerate(texts) if t.startswith(copy.upper()))
    assert data.real[first] and data.real[second]
    assert data.groups[first] == data.groups[second] == "user:alice"
    assert "user:bob" not in set(data.groups) and "user:user1" in set(data.groups)
    assert len({g for g, r in zip(data.groups, data.real, strict=True) if not r}) == int((~data.real).sum())
    fold = _fold_ids(data, 5)
    assert fold[first] == fold[second]
