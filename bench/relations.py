"""Benchmark: relationship metrics, flags and statuses for 100,000 messages and 5,000 contacts (limit 10 s).

Writes a generated mailbox straight into a throwaway store (threads, replies, Cc, bulk mail, acts from
predictions and some labels), then times what `mailaudit report` does: load the frames, build the audit,
render the JSON export. Usage: python bench/relations.py [--messages N] [--contacts N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)
import numpy as np

from mailaudit.config import Config, IdentityConfig
from mailaudit.export import render_json
from mailaudit.frames import load_frames
from mailaudit.relations import build_relations
from mailaudit.store import ACTS, open_store

ME = "me@example.com"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
LIMIT_S = 10.0
ACT_RATES = (0.05, 0.03, 0.08, 0.02)  # intro_request, handoff, thank_you, reciprocal_ask


def generate(db: Path, n_messages: int, n_contacts: int, seed: int = 7) -> None:
    """Threads of 1-6 messages between the owner and one contact (sometimes with others on Cc), over 3 years."""
    rng = np.random.default_rng(seed)
    contacts = [f"person{i}@corp{i % 97}.example" for i in range(n_contacts)]
    weight = 1 / np.arange(1, n_contacts + 1) ** 0.8  # a few close contacts, a long tail
    weight /= weight.sum()
    end = int(AS_OF.timestamp())
    messages, recipients = [], []
    # every contact gets a thread, then the rest go mostly to the close contacts
    picks = iter(np.concatenate([rng.permutation(n_contacts), rng.choice(n_contacts, size=n_messages, p=weight)]))
    mid = threads = 0
    while mid < n_messages:
        who = int(next(picks))
        threads += 1
        cc = [int(c) for c in rng.choice(n_contacts, size=rng.integers(1, 4))] if rng.random() < 0.15 else []
        ts = end - int(rng.integers(0, 3 * 365 * 86400))
        mine = bool(rng.random() < 0.5)
        bulk = "list-id" if threads > n_contacts and rng.random() < 0.08 else ""  # newsletters, not contacts
        root = mid + 1
        for k in range(1 if bulk else int(rng.integers(1, 7))):
            if mid >= n_messages:
                break
            mid += 1
            sender = f"news{who % 50}@lists.example" if bulk else ME if mine else contacts[who]
            messages.append((mid, f"b{mid}@bench", str(mid), root, ts, sender, "sent" if sender == ME else "received",
                             int(k > 0), bulk))
            to = [contacts[who]] if sender == ME else [ME]
            recipients += [(mid, a, "to") for a in to] + [(mid, contacts[c], "cc") for c in cc if c != who]
            ts += int(rng.exponential(30 * 3600)) + 60
            mine = not mine if rng.random() < 0.8 else mine
    ids = np.arange(1, mid + 1)
    hits = rng.random((mid, len(ACTS))) < np.array(ACT_RATES)
    probs = np.where(hits, 0.9, 0.1)
    predictions = [
        (int(i), "bench", *map(float, p), ";".join(a for a, h in zip(ACTS, row, strict=True) if h))
        for i, p, row in zip(ids, probs, hits, strict=True)
    ]
    labelled = rng.choice(ids, size=mid // 50, replace=False)
    labels = [(int(i), "intro_request" if rng.random() < 0.3 else "", "bench", "2026-06-01") for i in labelled]
    with closing(open_store(db)) as conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages(id, message_id, content_hash, thread_id, date_ts, from_addr, direction, is_reply,"
            " bulk) VALUES (?,?,?,?,?,?,?,?,?)",
            messages,
        )
        conn.executemany("INSERT OR IGNORE INTO recipients VALUES (?,?,?)", recipients)
        conn.executemany("INSERT INTO names VALUES (?,?)", [(a, f"Person {i}") for i, a in enumerate(contacts)])
        conn.execute("INSERT INTO identity VALUES (?, 'config')", (ME,))
        conn.executemany(
            "INSERT INTO predictions(message, model, intro_request, handoff, thank_you, reciprocal_ask, acts)"
            " VALUES (?,?,?,?,?,?,?)",
            predictions,
        )
        conn.executemany("INSERT INTO labels VALUES (?,?,?,?)", labels)
        conn.execute("COMMIT")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=5_000)
    args = parser.parse_args()
    cfg = Config(identity=IdentityConfig(addresses=(ME,)))
    with tempfile.TemporaryDirectory(prefix="mailaudit-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        generate(db, args.messages, args.contacts)
        t_gen = time.perf_counter() - t0
        with closing(open_store(db)) as conn:
            t0 = time.perf_counter()
            frames = load_frames(conn, cfg.identity.addresses)
            t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        rel = build_relations(frames, cfg.relations, AS_OF)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = render_json(rel)
        t_export = time.perf_counter() - t0
    total = t_load + t_build + t_export
    statuses = rel.contacts["status"].value_counts().to_dict()
    print(f"relations: {len(frames.messages):,} messages, {len(rel.contacts):,} contacts listed, "
          f"{len(rel.flags):,} flags, statuses {statuses}")
    print(f"relations: load {t_load:.2f} s + metrics/flags/statuses {t_build:.2f} s + JSON export {t_export:.2f} s "
          f"({len(out) / 1e6:.1f} MB) = {total:.2f} s (limit {LIMIT_S:.0f} s)")
    print(f"relations: data generation {t_gen:.1f} s, not counted")
    return 0 if total < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
