"""Pure threading: Gmail thread ids, then References/In-Reply-To (JWZ-style), then subject + quoted text.

Union-find over messages and Message-ID containers: reference loops and shared Message-IDs cannot hang it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(slots=True)
class ThreadInput:
    id: int
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    norm_subject: str
    date_ts: int | None
    gm_thrid: str | None
    is_reply: bool
    own_fp: str
    quote_fp: str
    from_addr: str
    recipients: frozenset[str] = field(default_factory=frozenset)


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


def build_threads(items: list[ThreadInput], window_days: int = 30) -> dict[int, int]:
    """Map each message id to its thread's root (the earliest message of the thread)."""
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
    """Link through every referenced id (missing ones are glue containers); return messages with a parent."""
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
    """A reply with no resolvable parent joins an earlier message with the same normalised subject.

    Preferred: the one whose own text the reply quotes; else the latest within the window that shares
    a participant with the reply.
    """
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


# (id, Message-ID, In-Reply-To, References, normalised subject, has a date, Gmail thread id, current thread)
ThreadKey = tuple[int, str | None, str | None, str, str, bool, str | None, int | None]


def affected_messages(keys: list[ThreadKey]) -> set[int] | None:
    """The messages whose thread may change now that the unthreaded ones (thread None) arrived, or None when
    that is most of the store (thread everything then).

    Threading is a union of links: Message-ID and references, Gmail thread id, and the subject group in which
    a reply without a known parent finds one. The unthreaded messages, the stored ones they share an id, a
    reference or a Gmail thread with, and then every thread and subject group any of these is in,
    transitively, hold every link that can change: threading just them gives the whole store's answer.
    (A stored thread already holds all stored messages that share its references or Gmail ids.)
    """
    frontier = [k for k in keys if k[7] is None]
    if len(frontier) * 2 > len(keys):
        return None
    if not frontier:
        return set()
    found = {k[0] for k in frontier}
    refs = {x for k in frontier for x in (k[1], k[2], *(k[3].split() if k[3] else ())) if x}
    gms = {k[6] for k in frontier if k[6]}
    frontier += [k for k in keys if k[0] not in found and (
        k[1] in refs or k[2] in refs or k[6] in gms or (k[3] and not refs.isdisjoint(k[3].split())))]
    subjects: set[str] = set()
    threads: set[int] = set()
    while frontier:
        found.update(k[0] for k in frontier)
        if len(found) * 2 > len(keys):
            return None
        new_subjects = {k[4] for k in frontier if k[4] and k[5]} - subjects
        new_threads = {k[7] for k in frontier if k[7] is not None} - threads
        subjects |= new_subjects
        threads |= new_threads
        frontier = [k for k in keys if k[0] not in found and ((k[5] and k[4] in new_subjects) or k[7] in new_threads)]
    return found
