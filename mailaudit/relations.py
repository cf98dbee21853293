"""Per-contact relationship metrics, flags and statuses, in both directions, from messages and acts (pandas)."""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from mailaudit.addresses import is_noreply, normalise_address
from mailaudit.config import Config, RelationsConfig
from mailaudit.flags import BRUISING, DAY, EDGE_COLUMNS, EPS, ME, ONE_WAY, Prepared, build_flags
from mailaudit.frames import Frames, load_frames
from mailaudit.store import ACTS

STATUSES = ("bruised", "one_way", "drifting", "dormant", "healthy")
# The metrics of one contact, in the order of the JSON export; the windowed ones cover the report window.
METRIC_COLUMNS = (
    "sent", "received", "asks_by_them", "asks_by_me", "gives_by_them", "gives_by_me", "last_contact",
    "median_reply_hours_them", "median_reply_hours_me", "reciprocity", "reciprocity_prev",
    "threads_started_by_them", "threads_started_by_me", "reply_rate_them", "reply_rate_me",
    "longest_silence_days", "sent_prev", "received_prev",
)
CONTACT_COLUMNS = ("contact", "name", "status", "flags", *METRIC_COLUMNS)
FLAG_COLUMNS = ("contact", "flag", "by", "ts", "evidence", "detail")


@dataclass(frozen=True)
class Relations:
    """The audit for one report date: DataFrames with declared columns, ready for any renderer."""

    as_of: datetime
    window_days: int
    me: tuple[str, ...]
    contacts: pd.DataFrame  # CONTACT_COLUMNS, one row per contact, most troubled first
    flags: pd.DataFrame  # FLAG_COLUMNS; evidence = Message-IDs with angle brackets, in date order
    suggested_merges: pd.DataFrame  # name, contacts: several contacts under one display name, never merged here
    model: dict[str, object]


def as_of_from_date(day: date | datetime | None) -> datetime:
    """The report instant: midnight UTC starting `day`, so the window is the whole days before it; None = now."""
    if day is None:
        return datetime.fromtimestamp(int(time.time()), UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def audit_store(conn: sqlite3.Connection, cfg: Config, as_of: datetime | None = None) -> Relations:
    """Load the store's messages and acts and audit every relationship as of `as_of` (default now)."""
    frames = load_frames(conn, cfg.identity.addresses)
    return build_relations(frames, cfg.relations, as_of, cfg.identity.merge)


def build_relations(
    frames: Frames,
    cfg: RelationsConfig | None = None,
    as_of: datetime | None = None,
    merge: tuple[tuple[str, ...], ...] = (),
) -> Relations:
    """Metrics, flags and a status per contact; `merge` lists address groups that are one person."""
    return build_relations_prepared(frames, cfg, as_of, merge)[0]


def build_relations_prepared(
    frames: Frames,
    cfg: RelationsConfig | None = None,
    as_of: datetime | None = None,
    merge: tuple[tuple[str, ...], ...] = (),
) -> tuple[Relations, Prepared]:
    """build_relations, also returning its contact edges, so the report's charts need not rebuild them."""
    cfg = cfg or RelationsConfig()
    as_of = as_of or as_of_from_date(None)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    p = prepare(frames, cfg, int(as_of.timestamp()), merge)
    flags = build_flags(p)
    contacts = build_metrics(p)
    contacts.insert(0, "contact", p.keys)
    contacts.insert(1, "name", [p.names.get(k, "") for k in p.keys])
    contacts.insert(2, "status", _statuses(contacts, flags, p))
    contacts.insert(3, "flags", _flag_summary(flags, len(p.keys)))
    contacts[["reciprocity", "reciprocity_prev"]] = contacts[["reciprocity", "reciprocity_prev"]].round(3)
    rank = contacts["status"].map({s: i for i, s in enumerate(STATUSES)})
    order = np.lexsort((contacts["contact"].to_numpy(), rank.to_numpy()))
    contacts = contacts.iloc[order].reset_index(drop=True).loc[:, list(CONTACT_COLUMNS)]
    rel = Relations(
        as_of=as_of,
        window_days=cfg.window_days,
        me=frames.me,
        contacts=contacts,
        flags=_flags_out(flags, p, frames),
        suggested_merges=suggest_merges(p),
        model=dict(frames.model),
    )
    return rel, p


def status_counts(rel: Relations) -> dict[str, int]:
    """How many contacts have each status, in STATUSES order."""
    counts = rel.contacts["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def merge_map(merge: tuple[tuple[str, ...], ...], me: set[str]) -> dict[str, str]:
    """Normalised address -> the contact key of its [identity.merge] group (the group's first address)."""
    out: dict[str, str] = {}
    for group in merge:
        members = [a for a in (normalise_address(x) for x in group) if a and a not in me]
        for addr in members:
            out.setdefault(addr, members[0])
    return out


def prepare(frames: Frames, cfg: RelationsConfig, as_of_ts: int, merge: tuple[tuple[str, ...], ...]) -> Prepared:
    """The contact edges: each non-bulk message before as_of, once per contact it is between the owner and."""
    me = set(frames.me)
    keyed = merge_map(merge, me)
    msgs = frames.messages
    msgs = msgs[~msgs["bulk"].to_numpy() & (msgs["ts"].to_numpy() < as_of_ts)].reset_index(drop=True)
    from_me = msgs["from_addr"].isin(me).to_numpy()
    sender = _rekey(msgs["from_addr"], keyed)
    rec = frames.recipients
    rec = rec[rec["message"].isin(msgs["id"]).to_numpy() & ~rec["addr"].isin(me).to_numpy()]
    rec = pd.DataFrame({"message": rec["message"], "key": _rekey(rec["addr"], keyed)})
    rec = rec[rec["key"] != ""].drop_duplicates(["message", "key"]).reset_index(drop=True)
    edges = _edges(msgs, from_me, sender, rec)
    cids, keys = pd.factorize(edges["key"], sort=True)
    edges = edges.assign(cid=cids).sort_values(["cid", "ts", "message"], kind="stable").reset_index(drop=True)
    mine = edges["mine"].astype(np.int64)
    edges["prior_mine"] = mine.groupby(edges["cid"]).cumsum() - mine
    edges["prior_theirs"] = (1 - mine).groupby(edges["cid"]).cumsum() - (1 - mine)
    code = pd.Series(np.arange(len(keys)), index=keys)
    who = np.where(from_me, ME, code.reindex(sender).fillna(-2).to_numpy()).astype(np.int64)
    return Prepared(
        edges=edges.loc[:, list(EDGE_COLUMNS)],
        messages=pd.DataFrame({"id": msgs["id"], "thread": msgs["thread_id"], "ts": msgs["ts"], "sender": who}),
        recipients=rec,
        keys=np.asarray(keys, dtype=object),
        names=_names(frames.names, keyed),
        as_of_ts=as_of_ts,
        window_start=as_of_ts - cfg.window_days * DAY,
        cfg=cfg,
    )


def _edges(msgs: pd.DataFrame, from_me: np.ndarray, sender: pd.Series, rec: pd.DataFrame) -> pd.DataFrame:
    """One row per (message, contact): the owner's mail to each person on To/Cc, and each person's mail to the
    owner; no-reply style addresses are never contacts. n_other = the other people on To/Cc."""
    n_rc = rec.groupby("message").size()
    sent = rec[rec["message"].isin(msgs["id"][from_me]).to_numpy()].assign(mine=True)
    sent["n_other"] = n_rc.reindex(sent["message"]).to_numpy() - 1
    recv = pd.DataFrame({"message": msgs["id"][~from_me], "key": sender[~from_me], "mine": False})
    recv = recv[recv["key"] != ""]
    on_it = pd.MultiIndex.from_frame(recv[["message", "key"]]).isin(pd.MultiIndex.from_frame(rec[["message", "key"]]))
    recv["n_other"] = n_rc.reindex(recv["message"], fill_value=0).to_numpy() - on_it
    edges = pd.concat([sent, recv], ignore_index=True)
    people = pd.Series(edges["key"].unique(), dtype="object")
    machine = set(people[people.map(is_noreply).astype(bool)])
    edges = edges[~edges["key"].isin(machine).to_numpy()]
    openers = msgs.sort_values(["ts", "id"], kind="stable").drop_duplicates("thread_id")["id"]
    attrs = msgs.set_index("id").loc[:, ["thread_id", "ts", "is_reply", *ACTS]]
    edges = edges.join(attrs, on="message").rename(columns={"thread_id": "thread", "intro_request": "ask"})
    edges["opener"] = edges["message"].isin(openers).to_numpy()
    edges["give"] = (edges["handoff"] | edges["thank_you"] | edges["reciprocal_ask"]).to_numpy()
    return edges


def _rekey(addrs: pd.Series, keyed: dict[str, str]) -> pd.Series:
    if not keyed:
        return addrs
    return pd.Series([keyed.get(a, a) for a in addrs], index=addrs.index, dtype="object")


def _names(names: dict[str, str], keyed: dict[str, str]) -> dict[str, str]:
    """Display names by normalised address; a merged contact takes its first named address's name."""
    out = {normalise_address(a): n for a, n in names.items() if n}
    for addr, key in keyed.items():
        if key not in out and addr in out:
            out[key] = out[addr]
    return out


def build_metrics(p: Prepared) -> pd.DataFrame:
    """The per-contact metrics (METRIC_COLUMNS), one row per cid."""
    e, n, T = p.edges, len(p.keys), p.as_of_ts
    cid, ts, mine = e["cid"].to_numpy(), e["ts"].to_numpy(), e["mine"].to_numpy()
    now = ts >= p.window_start
    prev = (ts >= p.window_start - p.cfg.window_days * DAY) & ~now

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(cid[mask], minlength=n)

    out = pd.DataFrame({
        "sent": count(mine & now), "received": count(~mine & now),
        "asks_by_them": count(~mine & now & e["ask"].to_numpy()),
        "asks_by_me": count(mine & now & e["ask"].to_numpy()),
        "gives_by_them": count(~mine & now & e["give"].to_numpy()),
        "gives_by_me": count(mine & now & e["give"].to_numpy()),
        "threads_started_by_them": count(~mine & now & e["opener"].to_numpy()),
        "threads_started_by_me": count(mine & now & e["opener"].to_numpy()),
        "sent_prev": count(mine & prev), "received_prev": count(~mine & prev),
    })
    out["reciprocity"] = _reciprocity(out["sent"].to_numpy(), out["received"].to_numpy())
    out["reciprocity_prev"] = _reciprocity(out["sent_prev"].to_numpy(), out["received_prev"].to_numpy())
    _replies(out, e, now, n)
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, cid, ts)
    out["last_contact"] = [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") for t in last]
    gaps = e.groupby("cid")["ts"].diff().groupby(cid).max().reindex(range(n), fill_value=0).fillna(0)
    out["longest_silence_days"] = np.round(np.maximum(gaps.to_numpy(), T - last) / DAY, 1)
    out["last_ts"] = last
    return out


def _reciprocity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min/max of the two directions' counts: 1.0 balanced, 0.0 one-way, NaN with no mail at all."""
    hi = np.maximum(a, b).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > 0, np.minimum(a, b) / hi, np.nan)


def _replies(out: pd.DataFrame, e: pd.DataFrame, now: np.ndarray, n: int) -> None:
    """Reply rate and median reply time each way: a message is answered by the other side's first later reply
    in the same thread; `_them` = how the contact answers the owner's messages."""
    ts = e["ts"].to_numpy().astype(float)
    mine, cid = e["mine"].to_numpy(), e["cid"].to_numpy()
    is_reply = e["is_reply"].to_numpy()
    group = e.groupby(["cid", "thread"], sort=False).ngroup().to_numpy()
    for side, theirs in (("them", ~mine), ("me", mine)):
        replies = pd.Series(np.where(theirs & is_reply, ts, np.nan))
        following = replies.groupby(group).shift(-1).groupby(group).bfill().to_numpy()
        asked = ~theirs & now
        answered = asked & ~np.isnan(following)
        hours = (following - ts) / 3600
        total = np.bincount(cid[asked], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(total > 0, np.bincount(cid[answered], minlength=n) / total, np.nan)
        out[f"reply_rate_{side}"] = np.round(rate, 3)
        med = pd.Series(hours[answered]).groupby(cid[answered]).median()
        out[f"median_reply_hours_{side}"] = np.round(med.reindex(range(n)).to_numpy(), 2)


def _statuses(contacts: pd.DataFrame, flags: pd.DataFrame, p: Prepared) -> np.ndarray:
    n, cfg = len(p.keys), p.cfg
    bruised = np.zeros(n, dtype=bool)
    bruised[flags.loc[flags["flag"].isin(BRUISING), "cid"].to_numpy(dtype=np.int64)] = True
    one_way = np.zeros(n, dtype=bool)
    one_way[flags.loc[flags["flag"].isin(ONE_WAY), "cid"].to_numpy(dtype=np.int64)] = True
    now_n = contacts["sent"] + contacts["received"]
    prev_n = contacts["sent_prev"] + contacts["received_prev"]
    drop = (contacts["reciprocity_prev"] - contacts["reciprocity"]).fillna(-1)
    drifting = (
        (drop >= cfg.drifting_drop - EPS) & (now_n >= cfg.drifting_min_messages) & (prev_n >= cfg.drifting_min_messages)
    ).to_numpy()
    dormant = contacts["last_ts"].to_numpy() < p.as_of_ts - cfg.dormant_days * DAY
    return np.select([bruised, one_way, drifting, dormant], list(STATUSES[:4]), default="healthy")


def _flag_summary(flags: pd.DataFrame, n: int) -> list[str]:
    out = [""] * n
    for cid, flag, by in flags[["cid", "flag", "by"]].itertuples(index=False):
        out[cid] = f"{out[cid]};{flag}:{by}" if out[cid] else f"{flag}:{by}"
    return out


def _flags_out(flags: pd.DataFrame, p: Prepared, frames: Frames) -> pd.DataFrame:
    """cid -> contact key, message pks -> '<Message-ID>' (messages without one are left out)."""
    if flags.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FLAG_COLUMNS}).astype({"ts": "int64"})
    wanted = {m for ev in flags["evidence"] for m in ev}
    m = frames.messages
    ids = m.loc[m["id"].isin(wanted).to_numpy(), ["id", "message_id"]]
    msgid = {int(i): f"<{v}>" for i, v in ids.itertuples(index=False) if v}
    return pd.DataFrame({
        "contact": p.keys[flags["cid"].to_numpy(dtype=np.int64)],
        "flag": flags["flag"], "by": flags["by"], "ts": flags["ts"].astype(np.int64),
        "evidence": [[msgid[m] for m in ev if m in msgid] for ev in flags["evidence"]],
        "detail": flags["detail"],
    })


_NAME_SPACE = re.compile(r"\s+")


def _name_key(name: str) -> str:
    """'Smith, Alice' and ' alice  SMITH' -> 'alice smith'; '' for names that say nothing (empty, an address)."""
    name = name.strip().strip("'\"").strip()
    if not name or "@" in name:
        return ""
    if name.count(",") == 1:
        last, first = name.split(",")
        name = f"{first} {last}"
    return _NAME_SPACE.sub(" ", name).strip().casefold()


def suggest_merges(p: Prepared) -> pd.DataFrame:
    """Contacts sharing one display name: likely one person with several addresses. Only suggested: merging
    is the user's call ([identity] merge)."""
    groups: dict[str, list[str]] = {}
    for key in p.keys:
        name_key = _name_key(p.names.get(key, ""))
        if name_key:
            groups.setdefault(name_key, []).append(key)
    rows = [
        {"name": p.names[keys[0]], "contacts": sorted(keys)} for keys in groups.values() if len(keys) > 1
    ]
    rows.sort(key=lambda r: r["name"].casefold())
    return pd.DataFrame(rows, columns=["name", "contacts"])


def build_export(rel: Relations) -> dict[str, object]:
    """The JSON export: as_of, window_days, me, model, contacts (status, flags with evidence, metrics)."""
    by_contact: dict[str, list[dict[str, object]]] = {}
    for row in rel.flags.itertuples(index=False):
        by_contact.setdefault(row.contact, []).append(
            {"flag": row.flag, "by": row.by, "evidence": list(row.evidence), "detail": row.detail}
        )
    contacts = []
    for row in rel.contacts.to_dict("records"):
        contacts.append({
            "contact": row["contact"],
            "name": row["name"],
            "status": row["status"],
            "flags": by_contact.get(row["contact"], []),
            "metrics": {k: _json_value(row[k]) for k in METRIC_COLUMNS},
        })
    return {
        "as_of": rel.as_of.strftime("%Y-%m-%d"),
        "window_days": rel.window_days,
        "me": list(rel.me),
        "model": {"version": rel.model.get("version"), "macro_f1": rel.model.get("macro_f1")},
        "contacts": contacts,
        "suggested_merges": rel.suggested_merges.to_dict("records"),
    }


def _json_value(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
