"""Contact edges: each message between the owner and a contact, once per contact, grouped a few contacts at a time.

Every metric and rule reads one contact's edges (no_follow_up also reads the owner's own mail in that contact's
threads), so the audit can take the contacts in chunks and hold one chunk at a time: its memory follows the
chunk, not the mailbox. The same builders serve frames in memory (`frame_chunks`) and the store streamed through
SQLite's temp tables (edgestore.py), so both give the same audit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from mailaudit.addresses import is_noreply, normalise_address
from mailaudit.config import RelationsConfig
from mailaudit.flags import DAY, EDGE_COLUMNS, ME, Prepared
from mailaudit.frames import Frames
from mailaudit.store import ACTS

CHUNK_EDGES = 100_000  # edges audited at once; a contact is never split, so one busy contact may exceed it
# an edge before its contact is numbered: what edgestore keeps in its temp table, in this order
KEYED_COLUMNS = (
    "key", "message", "ts", "thread", "mine", "is_reply", "opener", "ask", "handoff", "thank_you", "reciprocal_ask",
    "n_other",
)
KEYED_DTYPES = {c: "object" if c == "key" else "bool" if c in (
    "mine", "is_reply", "opener", "ask", "handoff", "thank_you", "reciprocal_ask") else "int64" for c in KEYED_COLUMNS}
# a message as message_edges reads it: non-bulk, before as_of; opener = the first of its thread (by ts, id)
INPUT_COLUMNS = ("id", "thread_id", "ts", "from_addr", "is_reply", *ACTS, "opener")


def merge_map(merge: tuple[tuple[str, ...], ...], me: set[str]) -> dict[str, str]:
    """Normalised address -> the contact key of its [identity.merge] group (the group's first address)."""
    out: dict[str, str] = {}
    for group in merge:
        members = [a for a in (normalise_address(x) for x in group) if a and a not in me]
        for addr in members:
            out.setdefault(addr, members[0])
    return out


def display_names(names: dict[str, str], keyed: dict[str, str]) -> dict[str, str]:
    """Display names by normalised address; a merged contact takes its first named address's name."""
    out = {normalise_address(a): n for a, n in names.items() if n}
    for addr, key in keyed.items():
        if key not in out and addr in out:
            out[key] = out[addr]
    return out


def rekey(addrs: pd.Series, keyed: dict[str, str]) -> pd.Series:
    if not keyed:
        return addrs
    return pd.Series([keyed.get(a, a) for a in addrs], index=addrs.index, dtype="object")


def first_in_thread(msgs: pd.DataFrame) -> np.ndarray:
    """Whether each message opens its thread: the earliest by (ts, id) among `msgs`."""
    openers = msgs.sort_values(["ts", "id"], kind="stable").drop_duplicates("thread_id")["id"]
    return msgs["id"].isin(openers).to_numpy()


def message_edges(
    msgs: pd.DataFrame, recipients: pd.DataFrame, me: set[str], keyed: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The edges of some messages (INPUT_COLUMNS) as KEYED_COLUMNS, and their contact recipients (message, key).

    One row per (message, contact): the owner's mail to each person on To/Cc, and each person's mail to the owner;
    no-reply style addresses are never contacts. n_other = the other people on To/Cc. Each message is read on its
    own (with its recipients), so the store can be read a slice at a time."""
    from_me = msgs["from_addr"].isin(me).to_numpy()
    sender = rekey(msgs["from_addr"], keyed)
    rec = recipients[recipients["message"].isin(msgs["id"]).to_numpy() & ~recipients["addr"].isin(me).to_numpy()]
    rec = pd.DataFrame({"message": rec["message"], "key": rekey(rec["addr"], keyed)})
    rec = rec[rec["key"] != ""].drop_duplicates(["message", "key"]).reset_index(drop=True)
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
    attrs = msgs.set_index("id").loc[:, ["thread_id", "ts", "is_reply", "opener", *ACTS]]
    edges = edges.join(attrs, on="message").rename(columns={"thread_id": "thread", "intro_request": "ask"})
    return edges.loc[:, list(KEYED_COLUMNS)].astype(KEYED_DTYPES).reset_index(drop=True), rec


def contact_prepared(
    edges: pd.DataFrame, mine: pd.DataFrame, recipients: pd.DataFrame, names: dict[str, str], as_of_ts: int,
    cfg: RelationsConfig,
) -> Prepared:
    """What the rules read for the contacts in `edges` (KEYED_COLUMNS, every edge of each of them).

    `mine` (id, thread, ts) holds the owner's messages, at least those in these contacts' threads; `recipients`
    (message, key) the contact recipients, at least of these contacts' handoffs. Both are cut down to that here,
    so a chunk's Prepared is the same whichever way it was read."""
    cids, keys = pd.factorize(edges["key"], sort=True)
    e = edges.drop(columns="key").assign(cid=cids.astype(np.int64))
    e["give"] = (e["handoff"] | e["thank_you"] | e["reciprocal_ask"]).to_numpy()
    e = e.sort_values(["cid", "ts", "message"], kind="stable").reset_index(drop=True)
    own = e["mine"].astype(np.int64)
    e["prior_mine"] = own.groupby(e["cid"]).cumsum() - own
    e["prior_theirs"] = (1 - own).groupby(e["cid"]).cumsum() - (1 - own)
    theirs = e.loc[~e["mine"].to_numpy(), ["message", "thread", "ts", "cid"]]
    owner = mine[mine["thread"].isin(e["thread"].unique()).to_numpy()]
    theirs = theirs.rename(columns={"message": "id", "cid": "sender"})
    messages = pd.concat([theirs, owner.assign(sender=ME)], ignore_index=True)
    messages = messages.loc[:, ["id", "thread", "ts", "sender"]].astype(np.int64)
    handoffs = e.loc[e["handoff"].to_numpy(), "message"].unique()
    return Prepared(
        edges=e.loc[:, list(EDGE_COLUMNS)],
        messages=messages,
        recipients=recipients[recipients["message"].isin(handoffs).to_numpy()].reset_index(drop=True),
        keys=np.asarray(keys, dtype=object),
        names=names,
        as_of_ts=as_of_ts,
        window_start=as_of_ts - cfg.window_days * DAY,
        cfg=cfg,
    )


def chunk_of(sizes: np.ndarray, chunk_edges: int) -> np.ndarray:
    """Contacts (with `sizes` edges each, in key order) -> their chunk number: whole contacts, about
    `chunk_edges` edges a chunk."""
    return (np.cumsum(sizes) - sizes) // max(chunk_edges, 1)


def frame_chunks(
    frames: Frames, cfg: RelationsConfig, as_of_ts: int, keyed: dict[str, str], names: dict[str, str],
    chunk_edges: int = CHUNK_EDGES,
) -> Iterator[Prepared]:
    """The contacts of in-memory frames, a chunk at a time (at least one chunk, empty when there is no mail)."""
    me = set(frames.me)
    msgs = frames.messages
    msgs = msgs[~msgs["bulk"].to_numpy() & (msgs["ts"].to_numpy() < as_of_ts)].reset_index(drop=True)
    msgs = msgs.assign(opener=first_in_thread(msgs))
    edges, rec = message_edges(msgs, frames.recipients, me, keyed)
    own = msgs.loc[msgs["from_addr"].isin(me).to_numpy(), ["id", "thread_id", "ts"]]
    own = own.rename(columns={"thread_id": "thread"})
    codes, uniq = pd.factorize(edges["key"], sort=True)
    group = chunk_of(np.bincount(codes, minlength=len(uniq)), chunk_edges)[codes]
    for g in np.unique(group) if len(edges) else [None]:
        part = edges if g is None else edges[group == g]
        yield contact_prepared(part, own, rec, names, as_of_ts, cfg)
