"""Threading: Gmail ids, References/In-Reply-To with missing parents, loops, and the subject fallback."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaudit.threads import Threader, ThreadInput, _KeyTable, build_threads

from threadgen import mailboxes, reference_build_threads

DAY = 86400


def item(i, mid=None, irt=None, refs=(), subj="deal", ts=None, gm=None, reply=False, own="", quote="",
         frm="a@x", to=("b@x",)):
    return ThreadInput(i, mid, irt, list(refs), subj, ts if ts is not None else i * 3600, gm, reply, own, quote,
                       frm, frozenset(to))


def groups(roots):
    out = {}
    for m, r in roots.items():
        out.setdefault(r, set()).add(m)
    return sorted(sorted(g) for g in out.values())


def test_references_chain_and_missing_parent_glue():
    items = [
        item(1, "a", subj="x"),
        item(2, "b", irt="a", refs=["a"], subj="y"),
        item(3, "c", refs=["a", "missing"], subj="z"),
        item(4, "d", refs=["missing"], subj="w"),  # joined through the absent message's container
        item(5, "e", subj="other"),
    ]
    assert groups(build_threads(items)) == [[1, 2, 3, 4], [5]]


def test_root_is_earliest_message():
    roots = build_threads([item(1, "a", ts=500), item(2, "b", irt="a", ts=100)])
    assert roots == {1: 2, 2: 2}


def test_reference_loops_and_self_references_terminate():
    items = [
        item(1, "a", refs=["b"]),
        item(2, "b", refs=["c"]),
        item(3, "c", refs=["a"]),
        item(4, "d", refs=["d"], subj="solo"),
    ]
    assert groups(build_threads(items)) == [[1, 2, 3], [4]]


def test_duplicate_message_ids_do_not_crash():
    items = [item(1, "same", subj="p"), item(2, "same", subj="q"), item(3, "r", irt="same", subj="s")]
    roots = build_threads(items)
    assert set(roots) == {1, 2, 3}
    assert roots[3] == roots[1]


def test_gmail_thread_id_wins():
    items = [item(1, "a", gm="T1", subj="x"), item(2, "b", gm="T1", subj="totally different"), item(3, "c", gm="T2")]
    assert groups(build_threads(items)) == [[1, 2], [3]]


def test_subject_fallback_needs_reply_window_and_shared_people():
    items = [
        item(1, None, ts=0, frm="ann@x", to=("pat@x",)),
        item(2, None, ts=2 * DAY, reply=True, frm="pat@x", to=("ann@x",)),  # Re: deal, within window
        item(3, None, ts=40 * DAY, reply=True, frm="pat@x", to=("ann@x",)),  # too late: 38 days after the last
        item(4, None, ts=3 * DAY, reply=True, frm="zed@x", to=("quin@x",)),  # strangers sharing a subject
        item(5, None, ts=4 * DAY, reply=False, frm="ann@x", to=("pat@x",)),  # not a reply: a new thread
    ]
    assert groups(build_threads(items, window_days=30)) == [[1, 2], [3], [4], [5]]


def test_subject_fallback_prefers_the_quoted_parent():
    items = [
        item(1, None, ts=0, own="pleasecallsallybeckshecanhelpyou", frm="j@x", to=("p@x",)),
        item(2, None, ts=DAY, own="somethingelseentirelyaboutthedeal", frm="p@x", to=("k@x",)),
        item(3, None, ts=2 * DAY, reply=True, quote="pleasecallsallybeckshecanhelpyou", frm="p@x", to=("k@x",)),
    ]
    roots = build_threads(items)
    assert roots[3] == roots[1] != roots[2]


def test_large_input_is_fast_enough_to_not_hang():
    items = [item(i, f"m{i}", irt=f"m{i - 1}" if i % 10 else None, subj=f"s{i // 10}") for i in range(20000)]
    roots = build_threads(items)
    assert len(set(roots.values())) == 2000
    assert roots == reference_build_threads(items)  # and the key table grew several times on the way


def test_key_table_keeps_every_key_as_it_grows():
    table = _KeyTable()
    rng = random.Random(5)
    keys = list(dict.fromkeys([1, -1, 2**63 - 1, -(2**63)] + [rng.getrandbits(64) - 2**63 for _ in range(20000)]))
    assert [table.get_or_add(key, i) for i, key in enumerate(keys)] == list(range(len(keys)))
    assert [table.get_or_add(key, -5) for key in keys] == list(range(len(keys)))
    assert table.get_or_add(0, -5) == 0  # 0 marks an empty slot: it is stored as 1


@settings(max_examples=400, deadline=None)
@given(mailboxes(), st.sampled_from((0, 1, 30)), st.randoms(use_true_random=False))
def test_threader_gives_the_same_threads_as_the_threader_before_it_streamed(items, window, rng):
    """Same partition and same roots as the old object-per-message threader, in any input order."""
    expected = reference_build_threads(items, window)
    shuffled = items.copy()
    rng.shuffle(shuffled)
    assert build_threads(shuffled, window) == expected


def test_threader_refuses_rows_out_of_id_order():
    threader = Threader()
    with pytest.raises(ValueError, match="out of id order"):
        threader.add_headers([(2, "a", None, [], None, 0, False), (1, "b", None, [], None, 0, False)])


def test_forward_reference_counts_as_a_known_parent():
    """A reply whose parent is stored later (a higher id) has a parent: no subject fallback, as before."""
    items = [item(1, None, ts=0, frm="ann@x", to=("pat@x",)),
             item(2, "r", refs=["p"], ts=DAY, reply=True, frm="pat@x", to=("ann@x",)),
             item(3, "p", subj="other", ts=5 * DAY)]
    roots = build_threads(items)
    assert roots == reference_build_threads(items) == {1: 1, 2: 2, 3: 2}
    random.shuffle(items)
    assert build_threads(items) == {1: 1, 2: 2, 3: 2}
