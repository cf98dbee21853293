"""Per-contact relationship metrics, flags and statuses, in both directions, from messages and acts (pandas)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from mailaudit import edgestore
from mailaudit.config import Config, RelationsConfig
from mailaudit.edges import CHUNK_EDGES, display_names, frame_chunks, merge_map
from mailaudit.flags import BRUISING, DAY, EPS, FLAGS, ONE_WAY, Prepared, build_flags
from mailaudit.frames import Frames, load_model_info, owner_addresses

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


@dataclass(frozen=True)
class Audit:
    """The audit and, for the report's charts, each contact's monthly activity (ACTIVITY_COLUMNS)."""

    rel: Relations
    activity: pd.DataFrame


ACTIVITY_COLUMNS = ("contact", "month", "mine", "n", "asks", "gives")  # month = year * 12 + month - 1


def audit_store(
    conn: sqlite3.Connection, cfg: Config, as_of: datetime | None = None, months: int = 0,
    chunk_edges: int = CHUNK_EDGES,
) -> Audit:
    """Audit every relationship in the store as of `as_of` (default now), a chunk of contacts at a time, with the
    activity of the last `months` months. Memory follows the chunk and the contact table, not the mailbox."""
    cfg_rel, as_of = _defaults(cfg.relations, as_of)
    me = owner_addresses(conn, cfg.identity.addresses)
    keyed = merge_map(cfg.identity.merge, set(me))
    names = display_names(dict(conn.execute("SELECT addr, name FROM names")), keyed)
    chunks = edgestore.store_chunks(conn, set(me), keyed, names, int(as_of.timestamp()), cfg_rel, chunk_edges)
    return audit_chunks(chunks, cfg_rel, as_of, me, names, load_model_info(conn),
                        lambda pks: edgestore.message_ids(conn, pks), months)


def build_relations(
    frames: Frames,
    cfg: RelationsConfig | None = None,
    as_of: datetime | None = None,
    merge: tuple[tuple[str, ...], ...] = (),
    chunk_edges: int = CHUNK_EDGES,
) -> Relations:
    """Metrics, flags and a status per contact; `merge` lists address groups that are one person."""
    return audit_frames(frames, cfg, as_of, merge, chunk_edges=chunk_edges).rel


def audit_frames(
    frames: Frames,
    cfg: RelationsConfig | None = None,
    as_of: datetime | None = None,
    merge: tuple[tuple[str, ...], ...] = (),
    months: int = 0,
    chunk_edges: int = CHUNK_EDGES,
) -> Audit:
    """audit_store over frames already in memory (tests, benches, anything not read from a store)."""
    cfg, as_of = _defaults(cfg, as_of)
    keyed = merge_map(merge, set(frames.me))
    names = display_names(frames.names, keyed)
    chunks = frame_chunks(frames, cfg, int(as_of.timestamp()), keyed, names, chunk_edges)
    ids = frames.messages.loc[:, ["id", "message_id"]]

    def message_ids(pks: set[int]) -> dict[int, str]:
        found = ids[ids["id"].isin(pks).to_numpy()]
        return {int(i): f"<{v}>" for i, v in found.itertuples(index=False) if v}

    return audit_chunks(chunks, cfg, as_of, frames.me, names, frames.model, message_ids, months)


def _defaults(cfg: RelationsConfig | None, as_of: datetime | None) -> tuple[RelationsConfig, datetime]:
    as_of = as_of or as_of_from_date(None)
    return cfg or RelationsConfig(), as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)


def audit_chunks(
    chunks: Iterable[Prepared],
    cfg: RelationsConfig,
    as_of: datetime,
    me: tuple[str, ...],
    names: dict[str, str],
    model: dict[str, object],
    message_ids: Callable[[set[int]], dict[int, str]],
    months: int = 0,
) -> Audit:
    """Each chunk's contacts audited on their own (every metric and rule is per contact), then put together:
    contacts most troubled first, flags in FLAGS order, evidence as Message-IDs."""
    contact_parts, flag_parts, activity_parts = [], [], []
    for p in chunks:
        flags = build_flags(p)
        contacts = build_metrics(p)
        contacts.insert(0, "contact", p.keys)
        contacts.insert(1, "name", [p.names.get(k, "") for k in p.keys])
        contacts.insert(2, "status", _statuses(contacts, flags, p))
        contacts.insert(3, "flags", _flag_summary(flags, len(p.keys)))
        contact_parts.append(contacts.loc[:, list(CONTACT_COLUMNS)])
        flag_parts.append(flags.assign(contact=p.keys[flags["cid"].to_numpy(dtype=np.int64)]).drop(columns="cid"))
        activity_parts.append(monthly_activity(p, as_of, months))
    contacts = pd.concat(contact_parts, ignore_index=True)
    contacts[["reciprocity", "reciprocity_prev"]] = contacts[["reciprocity", "reciprocity_prev"]].round(3)
    rank = contacts["status"].map({s: i for i, s in enumerate(STATUSES)})
    order = np.lexsort((contacts["contact"].to_numpy(), rank.to_numpy()))
    contacts = contacts.iloc[order].reset_index(drop=True)
    rel = Relations(
        as_of=as_of,
        window_days=cfg.window_days,
        me=me,
        contacts=contacts,
        flags=_flags_out(pd.concat(flag_parts, ignore_index=True), message_ids),
        suggested_merges=suggest_merges(contacts["contact"].tolist(), names),
        model=dict(model),
    )
    return Audit(rel, pd.concat(activity_parts, ignore_index=True))


def monthly_activity(p: Prepared, as_of: datetime, months: int) -> pd.DataFrame:
    """ACTIVITY_COLUMNS for each contact, month and direction with mail, over the `months` months ending with the
    report date's (none when months is 0)."""
    e = p.edges
    month = e["ts"].to_numpy(dtype=np.int64).astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    month += 1970 * 12  # months since 1970-01 -> year * 12 + month - 1
    keep = month >= month_index(as_of) - months + 1 if months > 0 else np.zeros(len(e), dtype=bool)
    frame = e.loc[keep, ["cid", "mine", "ask", "give"]].assign(month=month[keep])
    grouped = frame.groupby(["cid", "month", "mine"], as_index=False).agg(
        n=("ask", "size"), asks=("ask", "sum"), gives=("give", "sum"))
    out = pd.DataFrame({
        "contact": p.keys[grouped["cid"].to_numpy(dtype=np.int64)], "month": grouped["month"].astype(np.int32),
        "mine": grouped["mine"].astype(bool), "n": grouped["n"].astype(np.int32),
        "asks": grouped["asks"].astype(np.int32), "gives": grouped["gives"].astype(np.int32),
    })
    return out.loc[:, list(ACTIVITY_COLUMNS)]


def month_index(as_of: datetime) -> int:
    """The month of the last instant before as_of (the window is the time before it)."""
    last = as_of - timedelta(seconds=1)
    return last.year * 12 + last.month - 1


def status_counts(rel: Relations) -> dict[str, int]:
    """How many contacts have each status, in STATUSES order."""
    counts = rel.contacts["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


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


def _flags_out(flags: pd.DataFrame, message_ids: Callable[[set[int]], dict[int, str]]) -> pd.DataFrame:
    """FLAG_COLUMNS in FLAGS then DIRECTIONS order, then by contact; message pks -> '<Message-ID>' (messages
    without one are left out)."""
    if flags.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FLAG_COLUMNS}).astype({"ts": "int64"})
    msgid = message_ids({m for ev in flags["evidence"] for m in ev})
    rank = flags["flag"].map({f: i for i, f in enumerate(FLAGS)}) * 2 + (flags["by"] == "me")
    flags = flags.iloc[np.lexsort((flags["contact"].to_numpy(), rank.to_numpy()))]
    return pd.DataFrame({
        "contact": flags["contact"].to_numpy(), "flag": flags["flag"].to_numpy(), "by": flags["by"].to_numpy(),
        "ts": flags["ts"].to_numpy(dtype=np.int64),
        "evidence": [[msgid[m] for m in ev if m in msgid] for ev in flags["evidence"]],
        "detail": flags["detail"].to_numpy(),
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


def suggest_merges(keys: list[str], names: dict[str, str]) -> pd.DataFrame:
    """Contacts sharing one display name: likely one person with several addresses. Only suggested: merging
    is the user's call ([identity] merge)."""
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        name_key = _name_key(names.get(key, ""))
        if name_key:
            groups.setdefault(name_key, []).append(key)
    rows = [
        {"name": names[keys[0]], "contacts": sorted(keys)} for keys in groups.values() if len(keys) > 1
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
