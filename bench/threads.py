"""Threading benchmark: settle (identity + threads) on a synthetic store of N messages, first import and weekly.

The store is written straight with SQL, no mbox and no parser, so a million messages take a minute to make:
threads of 1-12 messages with References chains, some replies that lost their headers (subject + quoted
text only), references to messages that are not stored, Gmail thread ids on a third of the threads, subjects
shared between threads, undated messages, 2 KB bodies. `first` threads the whole store (every message new),
`weekly` then stores --weekly later messages (a share of them replies into stored threads) and settles again.
Each is a fresh process: its time, and its peak RSS (VmHWM) beside its RSS before settle.
Usage: python bench/threads.py [--messages N] [--weekly N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)

from mailaudit.store import open_store

START = 1_609_459_200  # 2021-01-01
SPAN = 5 * 365 * 86400
BODY = ("Thanks for the note, let us talk next week about the proposal and the numbers. " * 26)[:2000]
COMMON = [f"quick question {i}" for i in range(40)]

SETTLE = r"""
import json, resource, sys, time
from mailaudit.config import Config
from mailaudit.settle import settle
from mailaudit.store import open_store

def rss_mb():
    with open("/proc/self/status") as fh:
        return {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in fh) if k in ("VmRSS", "VmHWM")}

conn = open_store(sys.argv[1])
before = rss_mb()["VmRSS"]
t = time.perf_counter()
done = settle(conn, Config())
s = time.perf_counter() - t
print(json.dumps({"s": s, "before_mb": before, "peak_mb": rss_mb()["VmHWM"], "threads": done.threads}))
"""


def _thread(rng: random.Random, tid: int, start: int, first_id: int, contacts: int) -> list[tuple]:
    """One thread's messages as (id, message_id, gm_thrid, date_ts, from, subject, in_reply_to, refs, is_reply,
    own_fp, quote_fp, recipients)."""
    size = min(12, int(rng.expovariate(1 / 2.5)) + 1)
    subject = rng.choice(COMMON) if rng.random() < 0.1 else f"project {tid}"
    people = [f"c{rng.randrange(contacts)}@example.org", "me@example.org"]
    gm = f"{tid:x}" if rng.random() < 0.33 else None
    missing = [f"gone.{tid}@example.org"] if rng.random() < 0.03 else []
    rows: list[tuple] = []
    ts = start
    for k in range(size):
        mid = f"{tid}.{k}@example.org"
        sender, to = people[k % 2], people[(k + 1) % 2]
        refs = (missing + [r[1] for r in rows])[-5:]
        headless = k and rng.random() < 0.05  # a client that drops References: subject and quote only
        date = None if rng.random() < 0.002 else ts
        rows.append((first_id + k, mid, gm, date, sender, subject, None if headless or not refs else refs[-1],
                     "" if headless else " ".join(refs), int(k > 0), f"fp{tid}.{k}",
                     f"fp{tid}.{k - 1}" if k else "", (to,)))
        ts += rng.randrange(600, 3 * 86400)
    return rows


def _insert(conn, rows: list[tuple]) -> None:  # noqa: ANN001
    conn.executemany(
        "INSERT INTO messages(id, message_id, content_hash, gm_thrid, date_ts, from_addr, subject, norm_subject,"
        " in_reply_to, refs, is_reply, own_fp, quote_fp, body_text, own_text, first_source, n_to)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,1)",
        ((r[0], r[1], f"h{r[0]}", r[2], r[3], r[4], ("Re: " if r[8] else "") + r[5], r[5], r[6], r[7], r[8], r[9],
          r[10], BODY, BODY[:300]) for r in rows),
    )
    conn.executemany("INSERT INTO recipients VALUES (?,?,'to')", ((r[0], a) for r in rows for a in r[11]))


def generate(db: Path, n: int, seed: int, contacts: int = 2000) -> None:
    """N messages in date order (ids follow it, as an import of a chronological export gives)."""
    rng = random.Random(seed)
    rows: list[tuple] = []
    tid = 0
    while len(rows) < n:
        rows += _thread(rng, tid, START + rng.randrange(SPAN), 0, contacts)
        tid += 1
    rows = sorted(rows[:n], key=lambda r: (r[3] is None, r[3] or 0))
    conn = open_store(db)
    conn.execute("BEGIN")
    _insert(conn, [(i + 1, *r[1:]) for i, r in enumerate(rows)])
    conn.execute("INSERT INTO meta VALUES ('bench_threads', ?)", (json.dumps({"n": n, "seed": seed, "tid": tid}),))
    conn.execute("COMMIT")
    conn.close()


def add_weekly(db: Path, k: int, seed: int) -> None:
    """K later messages: new threads, and replies (by References) into stored ones."""
    rng = random.Random(seed + 1)
    conn = open_store(db)
    meta = json.loads(conn.execute("SELECT value FROM meta WHERE key='bench_threads'").fetchone()[0])
    last, end = conn.execute("SELECT max(id), max(date_ts) FROM messages").fetchone()
    stored = conn.execute("SELECT message_id, norm_subject, from_addr FROM messages ORDER BY id DESC LIMIT 20000")
    recent = stored.fetchall()
    rows: list[tuple] = []
    tid = meta["tid"]
    while len(rows) < k:
        if rng.random() < 0.3:
            parent, subject, sender = rng.choice(recent)
            rows.append((0, f"w{len(rows)}@example.org", None, end + rng.randrange(7 * 86400), "me@example.org",
                         subject, parent, parent, 1, f"fpw{len(rows)}", "", (sender,)))
        else:
            rows += _thread(rng, tid, end + rng.randrange(7 * 86400), 0, 2000)
            tid += 1
    conn.execute("BEGIN")
    _insert(conn, [(last + 1 + i, *r[1:]) for i, r in enumerate(rows[:k])])
    conn.execute("COMMIT")
    conn.close()


def settle_in_child(db: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", SETTLE, str(db)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--weekly", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="keeps the generated store there (reused for the same N)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mailaudit-threads-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / f"base-{args.messages}-{args.seed}.db"
    try:
        t = time.perf_counter()
        if not base.exists():
            generate(base, args.messages, args.seed)
        print(f"threads: {args.messages:,} messages, store {base.stat().st_size / 1e6:,.0f} MB, "
              f"made in {time.perf_counter() - t:.0f} s; {work}")
        run = work / "run.db"
        shutil.copy(base, run)
        first = settle_in_child(run)
        add_weekly(run, args.weekly, args.seed)
        weekly = settle_in_child(run)
        print(f"{'settle':<24}{'time s':>8}{'RSS before MB':>15}{'peak MB':>10}{'threads':>10}")
        for name, r in (("first import", first), (f"weekly (+{args.weekly:,})", weekly)):
            print(f"{name:<24}{r['s']:>8.1f}{r['before_mb']:>15.0f}{r['peak_mb']:>10.0f}{r['threads']:>10,}")
    finally:
        for stale in work.glob("run.db*"):
            stale.unlink()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
