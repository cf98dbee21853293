"""Pure threading: Gmail thread ids, then References/In-Reply-To (JWZ-style), then subject + quoted text.

Union-find over messages and Message-ID containers: reference loops and shared Message-IDs cannot hang it.
The Threader reads streams of rows and keeps flat arrays, not an object per message: about 90 bytes a
message, where objects took 1.5 KB (bench/threads.py: settle at a million messages peaks at 175 MB, was 1.6 GB).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter


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


# (id, Message-ID, In-Reply-To, References, Gmail thread id, date, is a reply), streamed in id order
HeaderRow = tuple[int, str | None, str | None, Sequence[str], str | None, int | None, bool]
# (id, normalised subject, date, own-text fingerprint, quote fingerprint, From), by (subject, date, id)
SubjectRow = tuple[int, str, int, str, str, str]
# the To/Cc addresses of these messages (a message with none may be left out)
Recipients = Callable[[list[int]], Mapping[int, Collection[str]]]

_NO_DATE = 1 << 62  # an undated message sorts after every dated one: a thread's root is its earliest message
_NONE, _WANTS, _PENDING = 0, 1, 2  # subject fallback: not for this message, wanted, wanted unless a ref resolves


class Threader:
    """Threading in passes over row streams: add_headers (once), join_subjects over the groups of the
    fallback_ids, then roots.

    Containers are keyed by the 64-bit hash() of the Message-ID (of ("gm", id) for a Gmail thread), not by
    the string: two different ids with the same hash would merge two unrelated threads, a chance of about
    n²/2⁶⁵ (1e-7 for two million ids). Rows must come in id order: the first message with a Message-ID, the
    lowest id, holds it; later copies of that id join its thread only through their references. Nodes are
    32-bit: 2 billion messages and containers.
    """

    def __init__(self, window_days: int = 30) -> None:
        self.window_s = window_days * 86400
        self._parent = array("i")  # union-find over message and container nodes
        self._held = bytearray()  # per node: a message holds this Message-ID container
        self._keys = _KeyTable()  # hash of a Message-ID or Gmail thread -> its container node
        self._ids = array("q")  # per message, in id order
        self._dates = array("q")
        self._nodes = array("i")
        self._fallback = bytearray()  # _NONE, _WANTS or _PENDING
        self._pending = array("i")  # per _PENDING message: its index, its count of refs, then their nodes
        self._sealed = False

    def add_headers(self, rows: Iterable[HeaderRow]) -> None:
        """Pass 1: join each message to its Message-ID (if first to hold it), Gmail thread and references."""
        if self._sealed:
            raise RuntimeError("add_headers after the subject pass")
        for mid, message_id, in_reply_to, refs, gm_thrid, date_ts, is_reply in rows:
            if self._ids and mid <= self._ids[-1]:
                raise ValueError(f"thread rows out of id order: {mid} after {self._ids[-1]}")
            node = self._node()
            self._ids.append(mid)
            self._dates.append(_NO_DATE if date_ts is None else date_ts)
            self._nodes.append(node)
            if message_id:
                self._hold(hash(message_id), node)
            if gm_thrid:
                self._union(self._container(hash(("gm", gm_thrid))), node)
            wants = bool(is_reply and not gm_thrid and date_ts is not None)
            self._fallback.append(self._join_refs(node, message_id, (*refs, in_reply_to), wants))

    def _hold(self, key: int, node: int) -> None:
        held = self._keys.get_or_add(key, node)
        if held == node:
            self._held[node] = 1
        elif not self._held[held]:  # referenced before it arrived: the container becomes this message's
            self._held[held] = 1
            self._union(held, node)

    def _join_refs(self, node: int, message_id: str | None, refs: Iterable[str | None], wants: bool) -> int:
        """Union with every referenced container; says whether the subject fallback may be needed."""
        unresolved: list[int] = []
        linked = False
        for ref in refs:
            if not ref or ref == message_id:
                continue
            container = self._container(hash(ref))
            self._union(container, node)
            if self._held[container]:
                linked = True
            else:
                unresolved.append(container)
        if not wants or linked:
            return _NONE
        if not unresolved:
            return _WANTS
        self._pending.extend((len(self._ids) - 1, len(unresolved), *unresolved))  # a later message may hold one
        return _PENDING

    def _seal(self) -> None:
        """After pass 1: a message is linked if a message holds one of its references, wherever it came."""
        if self._sealed:
            return
        self._sealed = True
        pending, at = self._pending, 0
        while at < len(pending):
            index, n = pending[at], pending[at + 1]
            refs = pending[at + 2:at + 2 + n]
            self._fallback[index] = _NONE if any(self._held[c] for c in refs) else _WANTS
            at += 2 + n
        self._pending = array("i")

    def fallback_ids(self) -> Iterator[int]:
        """The dated replies with no Gmail thread and no stored parent: only their subject groups matter."""
        self._seal()
        return (mid for mid, f in zip(self._ids, self._fallback, strict=True) if f == _WANTS)

    def join_subjects(self, rows: Iterable[SubjectRow], recipients: Recipients) -> None:
        """Pass 2, one subject group at a time: a fallback reply joins an earlier message of its group."""
        self._seal()
        for _subject, grouped in groupby(rows, key=itemgetter(1)):
            group = list(grouped)
            if len(group) > 1:
                self._join_group(group, recipients)

    def _join_group(self, group: list[SubjectRow], recipients: Recipients) -> None:
        """Preferred parent: the latest one whose own text the reply quotes; else the latest within the window
        that shares a participant with the reply. The choice depends on the group only, not on other unions."""
        times = [row[2] for row in group]
        people: Mapping[int, Collection[str]] | None = None
        for idx, row in enumerate(group):
            index = self._index(row[0])
            if self._fallback[index] != _WANTS:
                continue
            lo = bisect.bisect_left(times, row[2] - self.window_s, 0, idx)
            parent = _quoted(group, lo, idx, row[4])
            if parent is None:
                people = recipients([r[0] for r in group]) if people is None else people
                parent = _shares_people(group, lo, idx, people)
            if parent is not None:
                self._union(self._nodes[self._index(parent)], self._nodes[index])

    def roots(self) -> Iterator[tuple[int, int]]:
        """(message id, its thread's root: the earliest message, undated last, then lowest id), in id order."""
        self._seal()
        ids, dates, nodes = self._ids, self._dates, self._nodes
        best = array("i", [-1]) * len(self._parent)  # per union-find root: index of its earliest message
        for index, node in enumerate(nodes):
            top = self._find(node)
            known = best[top]
            if known < 0 or dates[index] < dates[known]:  # ties: the lower index is the lower id
                best[top] = index
        for index, node in enumerate(nodes):
            yield ids[index], ids[best[self._find(node)]]

    def _index(self, mid: int) -> int:
        index = bisect.bisect_left(self._ids, mid)
        if index == len(self._ids) or self._ids[index] != mid:
            raise KeyError(f"message {mid} was not in the header rows")
        return index

    def _node(self) -> int:
        node = len(self._parent)
        self._parent.append(node)
        self._held.append(0)
        return node

    def _container(self, key: int) -> int:
        node = self._keys.get_or_add(key, len(self._parent))
        return self._node() if node == len(self._parent) else node

    def _find(self, x: int) -> int:
        parent = self._parent
        while (up := parent[x]) != x:
            parent[x] = x = parent[up]  # path halving
        return x

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb


class _KeyTable:
    """hash -> node by open addressing in two flat arrays: 12 bytes a slot (at most 2/3 full) where a dict of ints
    takes about 110 bytes an entry (the entry, the key and the value objects), 120 MB at a million messages."""

    def __init__(self) -> None:
        self._keys = array("q", bytes(8 << 10))  # 0: an empty slot
        self._values = array("i", bytes(4 << 10))
        self._used = 0

    def get_or_add(self, key: int, value: int) -> int:
        """The value stored for `key`, else `value`, stored now."""
        key = key or 1  # hash() is 0 for almost nothing but "", which never comes here
        keys = self._keys
        mask = len(keys) - 1
        slot = key & mask
        while (found := keys[slot]) != key:
            if not found:
                keys[slot] = key
                self._values[slot] = value
                self._used += 1
                if self._used * 3 > len(keys) * 2:
                    self._grow()
                return value
            slot = (slot + 1) & mask
        return self._values[slot]

    def _grow(self) -> None:
        old = zip(self._keys, self._values, strict=True)
        self._keys = keys = array("q", bytes(16 * len(self._keys)))
        self._values = values = array("i", bytes(4 * len(keys)))
        mask = len(keys) - 1
        for key, value in old:
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot], values[slot] = key, value


def _quoted(group: list[SubjectRow], lo: int, idx: int, quote_fp: str) -> int | None:
    if quote_fp:
        for cand in reversed(group[lo:idx]):
            if cand[3] == quote_fp:
                return cand[0]
    return None


def _shares_people(group: list[SubjectRow], lo: int, idx: int, people: Mapping[int, Collection[str]]) -> int | None:
    mid, sender = group[idx][0], group[idx][5]
    mine = people.get(mid, ())
    for cand in reversed(group[lo:idx]):
        if cand[5] == sender or cand[5] in mine or sender in people.get(cand[0], ()):
            return cand[0]
    return None


def build_threads(items: list[ThreadInput], window_days: int = 30) -> dict[int, int]:
    """Map each message id to its thread's root (the earliest message of the thread); the Threader over a list."""
    items = sorted(items, key=lambda it: it.id)
    threader = Threader(window_days)
    threader.add_headers(
        (it.id, it.message_id, it.in_reply_to, it.references, it.gm_thrid, it.date_ts, it.is_reply) for it in items
    )
    by_id = {it.id: it for it in items}
    subjects = {by_id[mid].norm_subject for mid in threader.fallback_ids()}
    rows = sorted(
        (it.norm_subject, it.date_ts, it.id, it.own_fp, it.quote_fp, it.from_addr)
        for it in items if it.norm_subject and it.norm_subject in subjects and it.date_ts is not None
    )
    threader.join_subjects(
        ((mid, subject, ts, own, quote, sender) for subject, ts, mid, own, quote, sender in rows),
        lambda ids: {mid: by_id[mid].recipients for mid in ids},
    )
    return dict(threader.roots())


# (id, Message-ID, In-Reply-To, References, normalised subject, has a date, Gmail thread id, current thread)
ThreadKey = tuple[int, str | None, str | None, str, str, bool, str | None, int | None]


@dataclass(frozen=True)
class ThreadKeys:
    """What affected_messages reads, streamed: the store's counts, the unthreaded messages' keys, and a scan of
    every message's keys that starts afresh at each call (so memory holds the affected messages only)."""

    total: int
    unthreaded: int
    load_unthreaded: Callable[[], Iterable[ThreadKey]]
    scan: Callable[[], Iterable[ThreadKey]]


def affected_messages(keys: ThreadKeys) -> set[int] | None:
    """The messages whose thread may change now that the unthreaded ones (thread None) arrived, or None when
    that is most of the store (thread everything then).

    Threading is a union of links: Message-ID and references, Gmail thread id, and the subject group in which
    a reply without a known parent finds one. The unthreaded messages, the stored ones they share an id, a
    reference or a Gmail thread with, and then every thread and subject group any of these is in,
    transitively, hold every link that can change: threading just them gives the whole store's answer.
    (A stored thread already holds all stored messages that share its references or Gmail ids.)
    """
    if keys.unthreaded * 2 > keys.total:
        return None
    frontier = list(keys.load_unthreaded())
    found = {k[0] for k in frontier}
    refs = {x for k in frontier for x in (k[1], k[2], *(k[3].split() if k[3] else ())) if x}
    gms = {k[6] for k in frontier if k[6]}
    subjects = {k[4] for k in frontier if k[4] and k[5]}
    threads: set[int] = set()
    grew, first = bool(frontier), True
    while grew:  # until a whole scan finds no one new; each one found widens the subjects and threads at once
        grew = False
        for k in keys.scan():
            if not ((k[5] and k[4] in subjects) or k[7] in threads or (first and _shares_ids(k, refs, gms))):
                continue
            if k[0] in found:
                continue
            found.add(k[0])
            if len(found) * 2 > keys.total:
                return None
            grew = True
            if k[4] and k[5]:
                subjects.add(k[4])
            if k[7] is not None:
                threads.add(k[7])
        first = False  # the ids and Gmail threads of the new mail do not grow: one scan found all who share them
    return found


def _shares_ids(k: ThreadKey, refs: set[str], gms: set[str]) -> bool:
    return bool(k[1] in refs or k[2] in refs or k[6] in gms or (k[3] and not refs.isdisjoint(k[3].split())))
