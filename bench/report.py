"""Benchmark: the HTML report for 5,000 contacts (100,000 messages) renders in under 5 s into a file under 10 MB.

Builds the store of bench/relations.py (threads, replies, Cc, bulk mail, acts), gives every message a subject,
an own text of a few sentences and a Gmail thread id, then times what `mailaudit report` does for the page:
the audit, loading evidence, activity and history, rendering, and writing the four report files.
Usage: python bench/report.py [--messages N] [--contacts N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)
from relations import AS_OF, ME, generate

from mailaudit.config import Config, IdentityConfig
from mailaudit.report import audit_report, render_report, write_report_set
from mailaudit.store import open_store

LIMIT_S = 5.0
LIMIT_MB = 10.0
TEXT = ("Thanks again for the call last week. I wanted to follow up on the idea we discussed and share a few "
        "notes from my side; let me know what you think when you have a moment. ")


def add_text(db: Path) -> None:
    """Subjects, own text and Gmail thread ids, so evidence excerpts and links weigh what real ones do."""
    with closing(open_store(db)) as conn:
        conn.execute("BEGIN")
        conn.execute(
            "UPDATE messages SET subject = 'Re: project update ' || thread_id,"
            " gm_thrid = CAST(1800000000000000000 + thread_id AS TEXT)"
        )
        conn.execute("UPDATE texts SET own_text = ? || message", (TEXT * 2,))
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
        add_text(db)
        t_gen = time.perf_counter() - t0
        with closing(open_store(db)) as conn:
            t0 = time.perf_counter()
            page = audit_report(conn, cfg, AS_OF)
            t_audit = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = write_report_set(page, Path(tmp) / "reports")  # renders the page once, then writes all four
        t_write = time.perf_counter() - t0
        size_mb = files.html.stat().st_size / 1e6
        t0 = time.perf_counter()
        render_report(page.rel, page.inputs)
        t_render = time.perf_counter() - t0  # the page alone, again: a part of t_write, not added to it
    rel = page.rel
    total = t_audit + t_write
    print(f"report: {len(rel.contacts):,} contacts, {len(rel.flags):,} flags, {len(page.inputs.cards or ()):,} cards, "
          f"{len(page.inputs.evidence):,} evidence messages")
    print(f"report: audit + evidence/activity/history {t_audit:.2f} s + render and write html, latest, json, csv "
          f"{t_write:.2f} s (of which the page {t_render:.2f} s) = {total:.2f} s (limit {LIMIT_S:.0f} s)")
    print(f"report: HTML file {size_mb:.2f} MB (limit {LIMIT_MB:.0f} MB)")
    print(f"report: data generation {t_gen:.1f} s, not counted")
    return 0 if total < LIMIT_S and size_mb < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
