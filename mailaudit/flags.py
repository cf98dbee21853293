"""The eight relationship flags, each a pure rule over the contact edges, applied in both directions.

Rules are written for by="them" (the contact X did it to me); by="me" swaps the roles. A rule yields one
instance per triggering message (the one that completes the pattern) inside the report window; instances
of one flag, contact and direction are then merged into one flag with all their evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mailaudit.config import RelationsConfig

DAY = 86_400
ME = -1  # the sender code of the owner in Prepared.messages
EPS = 1e-9  # shares and drops are compared with this slack, so 0.6 - 0.3 counts as 0.3
BRUISING = ("no_thanks", "no_follow_up", "ignored_reciprocal", "glomming")
ONE_WAY = ("asks_only", "dormant_then_ask", "never_offers", "stranger_handoff")
FLAGS = BRUISING + ONE_WAY
DIRECTIONS = ("them", "me")
RAW_FLAG_COLUMNS = ("cid", "flag", "by", "ts", "evidence", "detail")  # evidence as message pks

# Prepared.edges: one row per (message, contact) between the owner and that contact, sorted by cid, ts, message.
# prior_mine / prior_theirs = the messages each way between the owner and that contact before this one.
EDGE_COLUMNS = (
    "cid", "message", "ts", "thread", "mine", "is_reply", "opener", "ask", "give", "handoff", "thank_you",
    "reciprocal_ask", "n_other", "prior_mine", "prior_theirs",
)


@dataclass(frozen=True)
class Prepared:
    """Everything a rule reads; built by edges.contact_prepared for a chunk of contacts, for one as_of."""

    edges: pd.DataFrame  # EDGE_COLUMNS; mine = the owner sent it; n_other = other people on To/Cc
    messages: pd.DataFrame  # id, thread, ts, sender (a cid, ME, or -2 for anyone else); non-bulk, before as_of
    recipients: pd.DataFrame  # message, key: the non-owner recipients of each of those messages
    keys: np.ndarray  # cid -> contact key
    names: dict[str, str]  # contact or address key -> display name
    as_of_ts: int
    window_start: int
    cfg: RelationsConfig

    def display(self, key: str) -> str:
        return self.names.get(key) or key

    def day(self, ts: float) -> str:
        """'12 May', with the year when it is not the report's year."""
        dt = datetime.fromtimestamp(int(ts), UTC)
        ref = datetime.fromtimestamp(self.as_of_ts, UTC).year
        return f"{dt.day} {dt:%b}" + ("" if dt.year == ref else f" {dt.year}")

    def days(self, first: float, last: float) -> str:
        """'on 12 May', 'on 12-14 May' or 'from 30 Apr to 2 May'."""
        a, b = self.day(first), self.day(last)
        if a == b:
            return f"on {a}"
        da, db = (datetime.fromtimestamp(int(t), UTC) for t in (first, last))
        if (da.year, da.month) == (db.year, db.month):
            return f"on {da.day}-{b}"
        return f"from {a} to {b}"


@dataclass(frozen=True)
class Instance:
    cid: int
    ts: int  # the triggering message's Date
    evidence: tuple[int, ...]  # message pks, in date order
    detail: str


def actor(e: pd.DataFrame, by: str) -> np.ndarray:
    """Rows sent by whoever does the flagged thing: the contact for by='them', the owner for by='me'."""
    mine = e["mine"].to_numpy()
    return ~mine if by == "them" else mine


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _span(seconds: float) -> str:
    if seconds < 3600:
        return _n(max(1, math.ceil(seconds / 60)), "minute")
    if seconds <= 2 * DAY:
        return _n(math.ceil(seconds / 3600 - EPS), "hour")
    return _n(math.ceil(seconds / DAY - EPS), "day")


def _you(by: str, them: str, me: str) -> str:
    return them if by == "them" else me


def _next_after(
    left: pd.DataFrame, right: pd.DataFrame, by: list[str], days: int
) -> np.ndarray:
    """For each left row (ts, by-keys), whether a right row with the same keys follows within `days` (strictly
    after, at most `days` later)."""
    if left.empty:
        return np.zeros(0, dtype=bool)
    r = right.loc[:, [*by, "ts"]].rename(columns={"ts": "next_ts"}).sort_values("next_ts", kind="stable")
    lf = left.loc[:, [*by, "ts"]].reset_index(drop=True)
    order = np.argsort(lf["ts"].to_numpy(), kind="stable")
    m = pd.merge_asof(
        lf.iloc[order], r, left_on="ts", right_on="next_ts", by=by, direction="forward", allow_exact_matches=False
    )
    found = (m["next_ts"].notna() & (m["next_ts"] - m["ts"] <= days * DAY)).to_numpy()
    out = np.empty(len(lf), dtype=bool)
    out[order] = found
    return out


def _complete(p: Prepared, ts: pd.Series, days: int) -> np.ndarray:
    """Triggers in the window whose waiting period is over before as_of (else the pattern is not complete)."""
    t = ts.to_numpy()
    return (t >= p.window_start) & (t + days * DAY < p.as_of_ts)


def glomming(p: Prepared, by: str) -> list[Instance]:
    """>= 3 asks within any 24 hours, or >= 5 within any 7 days; overlapping bursts are one instance."""
    e = p.edges
    asks = e[actor(e, by) & e["ask"].to_numpy()]
    cid, ts, msg = (asks[c].to_numpy() for c in ("cid", "ts", "message"))
    key = cid.astype(np.int64) * (1 << 35) + ts
    best_lo = np.full(len(asks), -1)
    for k, span in (
        (p.cfg.glomming_burst_asks, p.cfg.glomming_burst_hours * 3600),
        (p.cfg.glomming_week_asks, p.cfg.glomming_week_days * DAY),
    ):
        j = np.arange(len(asks)) - (k - 1)
        jj = np.clip(j, 0, None)
        fired = (j >= 0) & (cid[jj] == cid) & (ts - ts[jj] <= span) if len(asks) else np.zeros(0, bool)
        lo = np.maximum(np.searchsorted(key, key - span), np.searchsorted(key, key - ts))  # same contact only
        best_lo = np.where(fired & ((best_lo < 0) | (lo < best_lo)), lo, best_lo)
    out: list[Instance] = []
    episode: list[int] = []  # [lo, hi] of the current burst, as positions in asks
    for i in np.flatnonzero((best_lo >= 0) & (ts >= p.window_start)):
        lo = int(best_lo[i])
        if episode and cid[episode[0]] == cid[i] and lo <= episode[1]:
            episode[1] = int(i)
            out[-1] = _glom(p, by, cid, ts, msg, episode[0], episode[1])
        else:
            episode = [lo, int(i)]
            out.append(_glom(p, by, cid, ts, msg, lo, int(i)))
    return out


def _glom(p: Prepared, by: str, cid: np.ndarray, ts: np.ndarray, msg: np.ndarray, lo: int, hi: int) -> Instance:
    first, last = int(ts[lo]), int(ts[hi])
    when = p.days(first, last)
    asked = _you(by, "asked you", "you asked them")
    detail = f"{asked} for {_n(hi - lo + 1, 'introduction')} within {_span(last - first)} {when}"
    return Instance(int(cid[hi]), last, tuple(int(m) for m in msg[lo : hi + 1]), detail)


def asks_only(p: Prepared, by: str) -> list[Instance]:
    """Over all history: >= 3 threads started, >= 75% of them opening with an ask, never a give."""
    e, cfg = p.edges, p.cfg
    a = actor(e, by)
    opens = e[a & e["opener"].to_numpy()]
    n = len(p.keys)
    started = np.bincount(opens["cid"], minlength=n)
    asking = np.bincount(opens["cid"][opens["ask"]], minlength=n)
    gives = np.bincount(e["cid"][a & e["give"].to_numpy()], minlength=n)
    last = opens.groupby("cid")["ts"].max().reindex(range(n), fill_value=-1).to_numpy()
    hit = (
        (started >= cfg.asks_only_min_threads)
        & (asking >= cfg.asks_only_ask_share * started - EPS)
        & (gives == 0)
        & (last >= p.window_start)
    )
    out = []
    for c in np.flatnonzero(hit):
        theirs = opens[(opens["cid"] == c).to_numpy()]
        mine = theirs[theirs["ask"].to_numpy()]
        who = _you(by, "started", "you started")
        whom = _you(by, "with you", "with them")
        detail = (
            f"{who} {_n(int(started[c]), 'thread')} {whom} since {p.day(theirs['ts'].min())}, "
            f"{asking[c]} opening with an ask, and never gave anything back"
        )
        out.append(Instance(int(c), int(last[c]), tuple(mine["message"].tolist()), detail))
    return out


def dormant_then_ask(p: Prepared, by: str) -> list[Instance]:
    """An ask after >= 180 days without a message either way, when mail had gone both ways before."""
    e, cfg = p.edges, p.cfg
    g = e.groupby("cid", sort=False)
    prev_ts = g["ts"].shift(1).to_numpy()
    prev_msg = g["message"].shift(1).to_numpy()
    ts = e["ts"].to_numpy()
    with np.errstate(invalid="ignore"):
        silent = ts - prev_ts >= cfg.dormant_then_ask_silence_days * DAY
    exchanged = (e["prior_mine"].to_numpy() >= 1) & (e["prior_theirs"].to_numpy() >= 1)
    hit = actor(e, by) & e["ask"].to_numpy() & silent & exchanged
    hit &= ts >= p.window_start
    out = []
    asked = _you(by, "asked you", "you asked them")
    for i in np.flatnonzero(hit):
        days = int((ts[i] - prev_ts[i]) // DAY)
        detail = (
            f"{asked} for an introduction on {p.day(ts[i])} after {days} days of silence "
            f"(last mail {p.day(prev_ts[i])})"
        )
        out.append(Instance(int(e["cid"].iat[i]), int(ts[i]), (int(prev_msg[i]), int(e["message"].iat[i])), detail))
    return out


def no_thanks(p: Prepared, by: str) -> list[Instance]:
    """The other side helped (a handoff to X, or a reply to X's ask) and got no thank_you within 14 days."""
    e, days = p.edges, p.cfg.no_thanks_days
    a = actor(e, by)
    helper = ~a
    cols = ["cid", "thread", "ts", "message"]
    handoffs = e.loc[helper & e["handoff"].to_numpy(), cols].assign(ask=-1)
    asks = e.loc[a & e["ask"].to_numpy(), cols].sort_values("ts", kind="stable")
    replies = e.loc[helper & e["is_reply"].to_numpy(), cols].rename(columns={"ts": "hts", "message": "hmsg"})
    m = pd.merge_asof(
        asks, replies.sort_values("hts", kind="stable"), left_on="ts", right_on="hts", by=["cid", "thread"],
        direction="forward", allow_exact_matches=False,
    )
    m = m[m["hmsg"].notna()]
    answered = pd.DataFrame(
        {"cid": m["cid"], "thread": m["thread"], "ts": m["hts"].astype(np.int64),
         "message": m["hmsg"].astype(np.int64), "ask": m["message"]}
    )
    helps = pd.concat([handoffs, answered], ignore_index=True).drop_duplicates(["cid", "message"])
    helps = helps[_complete(p, helps["ts"], days)]
    thanked = _next_after(helps, e.loc[a & e["thank_you"].to_numpy(), ["cid", "ts"]], ["cid"], days)
    out = []
    for row in helps[~thanked].itertuples(index=False):
        what = "introduction" if row.ask < 0 else _you(by, "reply to their request", "reply to your request")
        if by == "them":
            detail = f"no thank-you within {days} days for your {what} on {p.day(row.ts)}"
        else:
            detail = f"you sent no thank-you within {days} days for their {what} on {p.day(row.ts)}"
        evidence = (int(row.message),) if row.ask < 0 else (int(row.ask), int(row.message))
        out.append(Instance(int(row.cid), int(row.ts), evidence, detail))
    return out


def no_follow_up(p: Prepared, by: str) -> list[Instance]:
    """A handoff introducing X to someone else on the message, and nothing from X in that thread in 14 days.

    by='me': the contact introduced the owner to someone and the owner sent nothing in that thread."""
    e, days = p.edges, p.cfg.no_follow_up_days
    introducer = ~actor(e, by)
    intros = e.loc[introducer & e["handoff"].to_numpy() & (e["n_other"].to_numpy() >= 1), ["cid", "thread", "ts",
                                                                                             "message"]]
    intros = intros[_complete(p, intros["ts"], days)]
    intros = intros.assign(who=intros["cid"] if by == "them" else ME)
    said = p.messages.rename(columns={"sender": "who"})
    followed = _next_after(intros, said, ["who", "thread"], days)
    out = []
    for row in intros[~followed].itertuples(index=False):
        others = _others(p, int(row.message), str(p.keys[row.cid]))
        if by == "them":
            detail = f"did not follow up within {days} days on your introduction to {others} on {p.day(row.ts)}"
        else:
            detail = (
                f"you did not follow up within {days} days on their introduction to {others} on {p.day(row.ts)}"
            )
        out.append(Instance(int(row.cid), int(row.ts), (int(row.message),), detail))
    return out


def _others(p: Prepared, message: int, contact: str) -> str:
    r = p.recipients
    keys = [k for k in r.loc[r["message"].to_numpy() == message, "key"].tolist() if k != contact]
    if not keys:
        return "someone"
    first = p.display(keys[0])
    return first if len(keys) == 1 else f"{first} and {_n(len(keys) - 1, 'other')}"


def ignored_reciprocal(p: Prepared, by: str) -> list[Instance]:
    """An offer of help (reciprocal_ask) to X, and nothing at all from X within 14 days."""
    e, days = p.edges, p.cfg.ignored_reciprocal_days
    a = actor(e, by)
    offers = e.loc[~a & e["reciprocal_ask"].to_numpy(), ["cid", "ts", "message"]]
    offers = offers[_complete(p, offers["ts"], days)]
    answered = _next_after(offers, e.loc[a, ["cid", "ts"]], ["cid"], days)
    out = []
    for row in offers[~answered].itertuples(index=False):
        who = _you(by, "did not answer your offer of help", "you did not answer their offer of help")
        detail = f"{who} of {p.day(row.ts)} within {days} days"
        out.append(Instance(int(row.cid), int(row.ts), (int(row.message),), detail))
    return out


def never_offers(p: Prepared, by: str) -> list[Instance]:
    """Over all history: >= 3 asks and never a reciprocal_ask; the latest ask triggers."""
    e = p.edges
    a = actor(e, by)
    asks = e[a & e["ask"].to_numpy()]
    n = len(p.keys)
    count = np.bincount(asks["cid"], minlength=n)
    offers = np.bincount(e["cid"][a & e["reciprocal_ask"].to_numpy()], minlength=n)
    last = asks.groupby("cid")["ts"].max().reindex(range(n), fill_value=-1).to_numpy()
    hit = (count >= p.cfg.never_offers_min_asks) & (offers == 0) & (last >= p.window_start)
    out = []
    for c in np.flatnonzero(hit):
        mine = asks[(asks["cid"] == c).to_numpy()]
        who = _you(by, "asked you", "you asked them")
        detail = (
            f"{who} for {_n(int(count[c]), 'introduction')} since {p.day(mine['ts'].min())} "
            "and never offered help in return"
        )
        out.append(Instance(int(c), int(last[c]), tuple(mine["message"].tolist()), detail))
    return out


def stranger_handoff(p: Prepared, by: str) -> list[Instance]:
    """A handoff with no two-way history before it, or copied to >= 3 others with < 3 earlier messages each way."""
    e, cfg = p.edges, p.cfg
    before_me, before_them = e["prior_mine"].to_numpy(), e["prior_theirs"].to_numpy()
    prior = np.minimum(before_me, before_them)
    n_other = e["n_other"].to_numpy()
    hit = (prior < cfg.stranger_min_prior_each_way) | (
        (n_other >= cfg.stranger_many_recipients) & (prior < cfg.stranger_many_min_prior_each_way)
    )
    hit &= actor(e, by) & e["handoff"].to_numpy() & (e["ts"].to_numpy() >= p.window_start)
    out = []
    for i in np.flatnonzero(hit):
        ts = int(e["ts"].iat[i])
        who = _you(by, "introduced someone to you", "you introduced someone to them")
        if prior[i] < cfg.stranger_min_prior_each_way:
            why = "with no two-way history between you"
        else:
            people = "1 other person" if n_other[i] == 1 else f"{n_other[i]} other people"
            why = (
                f"copying {people}, with only {_n(int(before_me[i]), 'earlier message')} from you "
                f"and {before_them[i]} from them"
            )
        out.append(Instance(int(e["cid"].iat[i]), ts, (int(e["message"].iat[i]),), f"{who} on {p.day(ts)} {why}"))
    return out


RULES: dict[str, Callable[[Prepared, str], list[Instance]]] = {  # in FLAGS order: bruising first
    "no_thanks": no_thanks,
    "no_follow_up": no_follow_up,
    "ignored_reciprocal": ignored_reciprocal,
    "glomming": glomming,
    "asks_only": asks_only,
    "dormant_then_ask": dormant_then_ask,
    "never_offers": never_offers,
    "stranger_handoff": stranger_handoff,
}


def build_flags(p: Prepared) -> pd.DataFrame:
    """Every flag in the window, one row per (contact, flag, direction): RAW_FLAG_COLUMNS."""
    rows = []
    for flag, rule in RULES.items():
        for by in DIRECTIONS:
            found: dict[int, list[Instance]] = {}
            for inst in rule(p, by):
                found.setdefault(inst.cid, []).append(inst)
            for cid, insts in found.items():
                rows.append(_merge(cid, flag, by, insts, p))
    return pd.DataFrame(rows, columns=list(RAW_FLAG_COLUMNS))


def _merge(cid: int, flag: str, by: str, insts: list[Instance], p: Prepared) -> dict[str, object]:
    insts = sorted(insts, key=lambda i: i.ts)
    evidence: dict[int, None] = {}
    for inst in insts:
        evidence.update(dict.fromkeys(inst.evidence))
    detail = insts[-1].detail
    if len(insts) > 1:
        detail += f" ({len(insts)} times since {p.day(insts[0].ts)})"
    return {"cid": cid, "flag": flag, "by": by, "ts": insts[-1].ts, "evidence": list(evidence), "detail": detail}
