"""The vectorised audit against a plain, loop-per-contact reading of the specification, on random mailboxes
with many contacts, shared threads, Cc, bulk mail, mail after as_of and messages stored out of date order."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from mailaudit.config import RelationsConfig
from mailaudit.frames import MESSAGE_COLUMNS, RECIPIENT_COLUMNS, Frames, declare
from mailaudit.relations import build_relations

ME = "me@example.com"
T = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
DAY, HOUR = 86_400, 3_600
CFG = RelationsConfig()
W0, P0 = T - CFG.window_days * DAY, T - 2 * CFG.window_days * DAY


def random_frames(seed: int) -> Frames:
    """300 messages with 20 people, each active in a few eras (so long silences happen), some of them takers
    (asks, never a give); threads carry on within a person's mail, and Cc brings in others."""
    rng = np.random.default_rng(seed)
    people = [f"p{i}@example.com" for i in range(20)]
    taker = {p: bool(rng.random() < 0.3) for p in people}
    days = [2, 10, 25, 45, 70, 88, 92, 100, 150, 230, 300, 420]
    eras = {p: list(rng.choice(days, size=int(rng.integers(1, 4)), replace=False)) for p in people}
    own_threads: dict[str, list[int]] = defaultdict(list)
    rows, recips = [], []
    for mid in range(1, 301):
        who = str(rng.choice(people))
        ts = T - int(rng.choice(eras[who])) * DAY + int(rng.integers(-2 * DAY, 2 * DAY))
        if own_threads[who] and rng.random() < 0.5:
            thread = int(rng.choice(own_threads[who][-3:]))
        else:
            thread = mid
            own_threads[who].append(mid)
        sender = ME if rng.random() < 0.45 else "noreply@robot.example" if rng.random() < 0.03 else who
        others = [str(a) for a in rng.choice(people, size=int(rng.integers(0, 4)), replace=False) if a != who]
        to = [who, *others] if sender == ME else [ME, *others]
        recips += [(mid, a, "to" if k == 0 else "cc") for k, a in enumerate(to)]
        rates = (0.6, 0, 0, 0) if sender != ME and taker[who] else (0.2, 0.15, 0.15, 0.1)
        acts = rng.random(4) < rates
        rows.append((mid, f"m{mid}@x", thread, ts, sender, bool(rng.random() < 0.6), bool(rng.random() < 0.04),
                     *map(bool, acts)))
    order = rng.permutation(len(rows))  # ids are not in date order
    messages = pd.DataFrame([rows[i] for i in order], columns=list(MESSAGE_COLUMNS))
    recipients = pd.DataFrame(recips, columns=list(RECIPIENT_COLUMNS))
    return Frames(declare(messages, MESSAGE_COLUMNS), declare(recipients, RECIPIENT_COLUMNS), me=(ME,))


@dataclass
class Edge:
    message: int
    ts: int
    thread: int
    mine: bool
    is_reply: bool
    ask: bool
    handoff: bool
    thanks: bool
    offer: bool
    opener: bool
    n_other: int

    @property
    def give(self) -> bool:
        return self.handoff or self.thanks or self.offer


def reference(frames: Frames) -> tuple[dict[str, dict], set[tuple[str, str, str]], dict[str, str]]:
    m = frames.messages
    m = m[~m["bulk"] & (m["ts"] < T)].sort_values(["ts", "id"])
    rec = defaultdict(list)
    for mid, addr in frames.recipients[["message", "addr"]].itertuples(index=False):
        if addr != ME and addr not in rec[mid]:
            rec[mid].append(addr)
    openers = set(m.drop_duplicates("thread_id")["id"])
    said: dict[tuple[str, int], list[int]] = defaultdict(list)  # (sender, thread) -> times
    edges: dict[str, list[Edge]] = defaultdict(list)
    for r in m.itertuples(index=False):
        mine = r.from_addr == ME
        said[(ME if mine else r.from_addr, r.thread_id)].append(r.ts)
        to = rec[r.id] if mine else [r.from_addr]
        for c in to:
            if c.startswith("noreply"):
                continue
            n_other = len(rec[r.id]) - 1 if mine else len([a for a in rec[r.id] if a != c])
            edges[c].append(Edge(r.id, r.ts, r.thread_id, mine, r.is_reply, r.intro_request, r.handoff, r.thank_you,
                                 r.reciprocal_ask, r.id in openers, n_other))
    metrics, found = {}, set()
    for c, es in edges.items():
        metrics[c] = contact_metrics(es)
        for flag, by in contact_flags(c, es, said):
            found.add((c, flag, by))
    statuses = {c: status(c, metrics[c], found) for c in edges}
    return metrics, found, statuses


def contact_metrics(es: list[Edge]) -> dict:
    now = [e for e in es if e.ts >= W0]
    prev = [e for e in es if P0 <= e.ts < W0]

    def recip(sel: list[Edge]) -> float:
        a, b = sum(e.mine for e in sel), sum(not e.mine for e in sel)
        return min(a, b) / max(a, b) if max(a, b) else float("nan")

    out = {
        "sent": sum(e.mine for e in now), "received": sum(not e.mine for e in now),
        "asks_by_them": sum(e.ask and not e.mine for e in now), "asks_by_me": sum(e.ask and e.mine for e in now),
        "gives_by_them": sum(e.give and not e.mine for e in now), "gives_by_me": sum(e.give and e.mine for e in now),
        "threads_started_by_them": sum(e.opener and not e.mine for e in now),
        "threads_started_by_me": sum(e.opener and e.mine for e in now),
        "reciprocity": recip(now), "reciprocity_prev": recip(prev), "n_now": len(now), "n_prev": len(prev),
        "last_ts": es[-1].ts,
        "longest_silence_days": round(max([T - es[-1].ts] + [b.ts - a.ts for a, b in pairwise(es)]) / DAY, 1),
    }
    for side, mine in (("them", True), ("me", False)):  # _them: how the contact answers my messages
        asked = [e for e in now if e.mine == mine]
        waits = []
        for e in asked:
            after = [f for f in es[es.index(e) + 1:] if f.thread == e.thread and f.mine != mine and f.is_reply]
            if after:
                waits.append((after[0].ts - e.ts) / HOUR)
        out[f"reply_rate_{side}"] = round(len(waits) / len(asked), 3) if asked else float("nan")
        out[f"median_reply_hours_{side}"] = round(statistics.median(waits), 2) if waits else float("nan")
    return out


def contact_flags(c: str, es: list[Edge], said: dict) -> set[tuple[str, str]]:
    out = set()
    for by in ("them", "me"):
        act = [e for e in es if e.mine == (by == "me")]
        other = [e for e in es if e.mine != (by == "me")]
        asks = [e for e in act if e.ask]
        for i, a in enumerate(asks):
            if a.ts >= W0 and any(
                len([b for b in asks[: i + 1] if a.ts - b.ts <= span]) >= k
                for k, span in ((3, 24 * HOUR), (5, 7 * DAY))
            ):
                out.add(("glomming", by))
        opens = [e for e in act if e.opener]
        if (len(opens) >= 3 and sum(e.ask for e in opens) >= 0.75 * len(opens) and not any(e.give for e in act)
                and opens[-1].ts >= W0):
            out.add(("asks_only", by))
        for i, e in enumerate(es):
            before = es[:i]
            if (e in act and e.ask and e.ts >= W0 and i > 0 and e.ts - es[i - 1].ts >= 180 * DAY
                    and any(b.mine for b in before) and any(not b.mine for b in before)):
                out.add(("dormant_then_ask", by))
            if e in act and e.handoff and e.ts >= W0:
                prior = min(sum(b.mine for b in before), sum(not b.mine for b in before))
                if prior < 1 or (e.n_other >= 3 and prior < 3):
                    out.add(("stranger_handoff", by))
        helps = {e.message: e for e in other if e.handoff}
        for a in asks:
            later = [h for h in other if h.thread == a.thread and h.is_reply and h.ts > a.ts]
            if later:
                helps.setdefault(later[0].message, later[0])
        for h in helps.values():
            if h.ts >= W0 and h.ts + 14 * DAY < T and not any(
                    e.thanks and h.ts < e.ts <= h.ts + 14 * DAY for e in act):
                out.add(("no_thanks", by))
        for h in other:
            if h.handoff and h.n_other >= 1 and h.ts >= W0 and h.ts + 14 * DAY < T:
                times = said.get((c if by == "them" else ME, h.thread), [])
                if not any(h.ts < t <= h.ts + 14 * DAY for t in times):
                    out.add(("no_follow_up", by))
            if h.offer and h.ts >= W0 and h.ts + 14 * DAY < T and not any(
                    h.ts < e.ts <= h.ts + 14 * DAY for e in act):
                out.add(("ignored_reciprocal", by))
        if len(asks) >= 3 and not any(e.offer for e in act) and asks[-1].ts >= W0:
            out.add(("never_offers", by))
    return out


def status(c: str, m: dict, found: set) -> str:
    mine = {f for cc, f, _ in found if cc == c}
    if mine & {"no_thanks", "no_follow_up", "ignored_reciprocal", "glomming"}:
        return "bruised"
    if mine:
        return "one_way"
    if m["n_now"] >= 4 and m["n_prev"] >= 4 and m["reciprocity_prev"] - m["reciprocity"] >= 0.3 - 1e-9:
        return "drifting"
    if m["last_ts"] < T - 180 * DAY:
        return "dormant"
    return "healthy"


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_audit_matches_the_reference(seed):
    frames = random_frames(seed)
    metrics, found, statuses = reference(frames)
    rel = build_relations(frames, CFG, datetime.fromtimestamp(T, UTC))
    assert set(zip(rel.flags["contact"], rel.flags["flag"], rel.flags["by"], strict=True)) == found
    assert dict(zip(rel.contacts["contact"], rel.contacts["status"], strict=True)) == statuses
    got = rel.contacts.set_index("contact")
    for c, want in metrics.items():
        for key, value in want.items():
            if key in got.columns:
                assert got.at[c, key] == pytest.approx(value, nan_ok=True, abs=0.02), (seed, c, key)  # rounding
    assert {len(f) for f in found} == {3} and len(found) > 5  # the scenario exercises many flags
