"""Import benchmark: messages/s and peak RSS for (a) ../shared/corpora/enron and (b) a generated 100,000-message
mbox, against the naive loop (mailbox.mbox + policy.default + get_body) over the same files, in the same run."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)

HERE = Path(__file__).resolve().parent
ENRON = HERE.parents[1] / "shared" / "corpora" / "enron"

NAIVE = r"""
import email, email.policy, mailbox, sys, time, json
files = sys.argv[1:]
t = time.perf_counter(); n = 0
for f in files:
    for m in mailbox.mbox(f, factory=None, create=False):
        msg = email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is not None:
            body.get_content()
        n += 1
print(json.dumps({"n": n, "s": time.perf_counter() - t}))
"""

OURS = r"""
import json, sys, time
from mailaudit.config import Config
from mailaudit.ingest import import_paths
from mailaudit.store import open_store
conn = open_store(sys.argv[1])
t = time.perf_counter()
s = import_paths(conn, sys.argv[2:], Config())
print(json.dumps({"n": s.seen, "new": s.new, "dups": s.duplicates, "s": time.perf_counter() - t}))
"""


def run(code: str, *args: str) -> tuple[dict, float]:
    """Run a measurement in a fresh process; returns its JSON line and its peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(out.stdout.strip().splitlines()[-1]), max(peak, before) / 1024


def measure(label: str, paths: list[str], files: list[str], tmp: Path) -> None:
    naive, _ = run(NAIVE, *files)
    ours, rss = run(OURS, str(tmp / f"{label}.db"), *paths)
    naive_rate = naive["n"] / naive["s"]
    our_rate = ours["n"] / ours["s"]
    print(f"{label}: {ours['n']} messages ({ours['new']} stored, {ours['dups']} duplicates) in {ours['s']:.1f} s "
          f"= {our_rate:,.0f} msg/s; naive loop {naive_rate:,.0f} msg/s; ratio {our_rate / naive_rate:.2f}x; "
          f"peak RSS {rss:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=100_000, help="size of the generated mbox")
    ap.add_argument("--skip-enron", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from gen_mailbox import write_mbox

    with tempfile.TemporaryDirectory(prefix="mailaudit-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.skip_enron and ENRON.is_dir():
            files = [str(p) for p in sorted(ENRON.glob("*/*.mbox"))]
            measure("enron", [str(ENRON)], files, tmp)
        elif not args.skip_enron:
            print(f"enron: skipped, {ENRON} not found")
        t = time.perf_counter()
        big = write_mbox(tmp / "generated.mbox", args.messages)
        size_mb = big.stat().st_size / 1e6
        print(f"generated {args.messages} messages ({size_mb:.0f} MB) in {time.perf_counter() - t:.0f} s")
        measure(f"generated-{args.messages}", [str(big)], [str(big)], tmp)


if __name__ == "__main__":
    main()
