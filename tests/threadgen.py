"""Random mail for the threading tests, and the threader before it streamed (the specification it keeps)."""

from __future__ import annotations

import bisect
from collections import defaultdict

from hypothesis import strategies as st

from mailaudit.threads import ThreadInput

DAY = 86400
PEOPLE = ("", "a@x", "b@x", "c@x", "d@x")


@st.composite
def mailboxes(draw: st.DrawFn, max_size: int = 40) -> list[ThreadInput]:
    """Shared, missing, forward and self references; duplicate and absent Message-IDs; Gmail ids; subject-only
    replies with quote fingerprints and participants; missing dates and equal ones. In id order."""
    n = draw(st.integers(1, max_size))
    ids = sorted(draw(st.sets(st.integers(1, 10 * max_size), min_size=n, max_size=n)))
    mids = [draw(st.sampled_from((f"m{i}",) * 6 + (None, f"m{max(0, i - 1)}", f"m{i + 1}"))) for i in range(n)]
    ref = st.one_of(st.integers(0, n).map(lambda k: f"m{k}"), st.integers(0, 3).map(lambda k: f"x{k}"))
    fingerprints = st.sampled_from(("", "", "f0", "f1", "f2"))
    items = []
    for i, mid in enumerate(ids):
        refs = draw(st.one_of(st.just([]), st.lists(ref, max_size=3)))
        items.append(ThreadInput(
            id=mid, message_id=mids[i], in_reply_to=draw(st.one_of(st.none(), ref, st.sampled_from(refs or [""]))),
            references=refs, norm_subject=draw(st.sampled_from(("", "s0", "s0", "s1"))),
            date_ts=draw(st.one_of(st.none(), st.integers(0, 80).map(lambda d: d * DAY // 2))),
            gm_thrid=draw(st.sampled_from((None,) * 8 + ("", "g1", "g2"))),
            is_reply=draw(st.sampled_from((True, True, False))),
            own_fp=draw(fingerprints), quote_fp=draw(fingerprints), from_addr=draw(st.sampled_from(PEOPLE)),
            recipients=frozenset(draw(st.lists(st.sampled_from(PEOPLE[1:]), max_size=2))),
        ))
    return items


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression, iteratively
            parent[x], x = root, parent[x]
        return root

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def reference_build_threads(items: list[ThreadInput], window_days: int = 30) -> dict[int, int]:
    """mailaudit.threads.build_threads as it was before the Threader (a dict of objects per message)."""
    uf = _UnionFind()
    by_msgid: dict[str, int] = {}
    for it in items:
        uf.find(it.id)
        if it.message_id and it.message_id not in by_msgid:
            by_msgid[it.message_id] = it.id
            uf.union(("mid", it.message_id), it.id)
    _join_gmail(items, uf)
    linked = _join_headers(items, uf, by_msgid)
    _join_subjects(items, uf, linked, window_days * 86400)
    return _roots(items, uf)


def _join_gmail(items: list[ThreadInput], uf: _UnionFind) -> None:
    for it in items:
        if it.gm_thrid:
            uf.union(("gm", it.gm_thrid), it.id)


def _join_headers(items: list[ThreadInput], uf: _UnionFind, by_msgid: dict[str, int]) -> set[int]:
    linked: set[int] = set()
    for it in items:
        refs = list(it.references)
        if it.in_reply_to and it.in_reply_to not in refs:
            refs.append(it.in_reply_to)
        for ref in refs:
            if ref == it.message_id:
                continue
            uf.union(("mid", ref), it.id)
            if ref in by_msgid:
                linked.add(it.id)
    return linked


def _join_subjects(items: list[ThreadInput], uf: _UnionFind, linked: set[int], window_s: int) -> None:
    by_subject: dict[str, list[ThreadInput]] = defaultdict(list)
    for it in items:
        if it.norm_subject and it.date_ts is not None:
            by_subject[it.norm_subject].append(it)
    for group in by_subject.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda x: (x.date_ts, x.id))
        times = [g.date_ts for g in group]
        for idx, it in enumerate(group):
            if not it.is_reply or it.id in linked or it.gm_thrid:
                continue
            lo = bisect.bisect_left(times, it.date_ts - window_s)  # type: ignore[operator]
            parent = _pick_parent(group[lo:idx], it)
            if parent is not None:
                uf.union(parent.id, it.id)


def _pick_parent(candidates: list[ThreadInput], it: ThreadInput) -> ThreadInput | None:
    if it.quote_fp:
        for cand in reversed(candidates):
            if cand.own_fp and cand.own_fp == it.quote_fp:
                return cand
    people = it.recipients | {it.from_addr}
    for cand in reversed(candidates):
        if cand.from_addr in people or it.from_addr in cand.recipients:
            return cand
    return None


def _roots(items: list[ThreadInput], uf: _UnionFind) -> dict[int, int]:
    groups: dict[object, list[ThreadInput]] = defaultdict(list)
    for it in items:
        groups[uf.find(it.id)].append(it)
    out: dict[int, int] = {}
    big = 1 << 62
    for members in groups.values():
        root = min(members, key=lambda m: (m.date_ts if m.date_ts is not None else big, m.id)).id
        for m in members:
            out[m.id] = root
    return out
