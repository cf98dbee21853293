"""The audit read from the store a chunk of contacts at a time (edgestore) against the audit of the whole mailbox
in memory: the same contacts, metrics, flags, evidence, merges and activity, however small the chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from relgen import AS_OF, ME, Box, ago, config

from mailaudit import edgestore
from mailaudit.frames import load_frames
from mailaudit.relations import audit_frames, audit_store
from mailaudit.store import open_store

ACT_NAMES = ("intro_request", "handoff", "thank_you", "reciprocal_ask")


def random_box(seed: int) -> Box:
    """Mail both ways with 14 people over two years, replies in threads, Cc, a newsletter, a no-reply robot,
    two addresses of one person (merged in the config), two people sharing a name, mail after as_of."""
    rng = np.random.default_rng(seed)
    people = [f"Person {i} <p{i}@example.com>" for i in range(12)]
    people += ["Dana Lee <dana@home.example>", "Dana Lee <dana@work.example>"]
    box, sent = Box(), []
    for k in range(160):
        who = str(rng.choice(people))
        when = ago(days=float(rng.uniform(-5, 700)))
        acts = [a for a, r in zip(ACT_NAMES, rng.random(4), strict=True) if r < 0.18]
        cc = [p for p in rng.choice(people, size=int(rng.integers(0, 4)), replace=False) if p != who]
        reply = str(rng.choice(sent)) if sent and rng.random() < 0.4 else None
        if rng.random() < 0.45:
            mid = box.send(who, when, acts, cc=cc, reply_to=reply)
        else:
            mid = box.receive(who, when, acts, cc=cc, reply_to=reply)
        sent.append(mid)
        if k % 40 == 0:
            box.receive("News <news@list.example>", when, extra={"List-Id": "<news.list.example>"})
            box.receive("Robot <noreply@robot.example>", when, ["handoff"])
    return box


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("seed", range(3))
def test_store_chunks_give_the_whole_mailbox_audit(tmp_path, seed):
    cfg = config(merge=(("p1@example.com", "p2@example.com"),))
    conn = random_box(seed).store(tmp_path, cfg)
    frames = load_frames(conn, cfg.identity.addresses)
    whole = audit_frames(frames, cfg.relations, AS_OF, cfg.identity.merge, months=24, chunk_edges=10**9)
    assert len(whole.rel.flags) > 5 and whole.rel.contacts["status"].nunique() >= 2  # the scenario says something
    assert len(whole.rel.suggested_merges) == 1  # the two Dana Lees
    for chunk_edges, message_slice in ((1, 7), (25, 50), (10**9, 10**6)):
        chunks = list(edgestore.store_chunks(
            conn, set(frames.me), {"p2@example.com": "p1@example.com"}, {}, int(AS_OF.timestamp()), cfg.relations,
            chunk_edges, message_slice))
        if chunk_edges == 1:
            assert len(chunks) == len(whole.rel.contacts)  # one contact a chunk
        got = audit_store(conn, cfg, AS_OF, months=24, chunk_edges=chunk_edges)
        pd.testing.assert_frame_equal(got.rel.contacts, whole.rel.contacts)
        pd.testing.assert_frame_equal(got.rel.flags, whole.rel.flags)
        pd.testing.assert_frame_equal(got.rel.suggested_merges, whole.rel.suggested_merges)
        pd.testing.assert_frame_equal(_sorted(got.activity, ["contact", "month", "mine"]),
                                      _sorted(whole.activity, ["contact", "month", "mine"]))
        assert got.rel.me == whole.rel.me and "pat@example.com" in got.rel.me
    assert not conn.execute("SELECT name FROM sqlite_temp_master WHERE name LIKE 'audit_%'").fetchall()  # dropped


def test_frame_chunks_give_the_same_audit_at_any_size(tmp_path):
    cfg = config()
    frames = load_frames(random_box(7).store(tmp_path, cfg), cfg.identity.addresses)
    whole = audit_frames(frames, cfg.relations, AS_OF, months=12, chunk_edges=10**9)
    for size in (1, 9, 60):
        got = audit_frames(frames, cfg.relations, AS_OF, months=12, chunk_edges=size)
        pd.testing.assert_frame_equal(got.rel.contacts, whole.rel.contacts)
        pd.testing.assert_frame_equal(got.rel.flags, whole.rel.flags)


def test_empty_store_audits_to_no_contacts(tmp_path):
    cfg = config()
    conn = open_store(tmp_path / "empty.db")
    got = audit_store(conn, cfg, AS_OF, months=12)
    assert got.rel.contacts.empty and got.rel.flags.empty and got.activity.empty
    assert list(got.rel.contacts.columns)[:4] == ["contact", "name", "status", "flags"]


def test_owner_mail_in_another_contacts_chunk_still_counts_as_follow_up(tmp_path):
    """X introduces me to Y (X's chunk); my reply goes to Y only (Y's chunk): no no_follow_up by me."""
    cfg = config()
    box = Box()
    x, y = "Xena <x@example.com>", "Yuri <y@example.com>"
    for k in range(3):
        box.send(x, ago(300 + k))
        box.receive(x, ago(290 + k))
    intro = box.receive(x, ago(40), ["handoff"], cc=[y])
    box.send(y, ago(38), reply_to=intro)
    conn = box.store(tmp_path, cfg)
    for size in (1, 10**9):
        flags = audit_store(conn, cfg, AS_OF, chunk_edges=size).rel.flags
        assert not ((flags["contact"] == "x@example.com") & (flags["flag"] == "no_follow_up")).any(), size
    assert ME.endswith("<pat@example.com>")
