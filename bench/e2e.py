"""End-to-end benchmark: the real `mailaudit run` on a generated Takeout-like mbox, then the weekly run.

Generates N messages (default 100,000; 2,000 Zipf-weighted contacts over 5 years; threads with
References, quoted replies, Cc, newsletters, HTML, attachments, acts at bench/gen_mailbox.ACT_RATES),
runs `python -m mailaudit -vv --db ... run --no-sync --import MBOX --as-of DATE --out-dir DIR` as a
subprocess, then a second `run` importing a second mbox of 1,000 later messages (some of them replies
into stored threads), and prints a table against the targets: first run under 3 minutes and under
1.5 GB peak RSS, weekly run under 15 s.

Stage times are the CLI's own `stage NAME: done in X s` DEBUG lines (mailaudit/audit.py); the import
stage is split at its `imported PATH` line into reading+parsing+storing and settling (identity and
threads). `audit` is report.audit_report (frames, relations, flags, statuses, evidence, activity,
history); `write` renders the page and writes the four report files. Memory is sampled every 0.1 s
over the process tree (the importer's parser pool included): `tree` is the largest sum of RSS seen at
one instant, `proc` the largest RSS of any single process (per stage: sampled; whole run: the kernel's
VmHWM of each process, exact). `cpu s` is user+system time of the tree: on a shared machine the wall
time depends on the neighbours' load (printed beside each run), the CPU time much less.
Usage: python bench/e2e.py [--messages N] [--contacts N] [--years N] [--weekly N] [--workdir DIR [--keep-store]]
       [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_mailbox import ThreadedMailbox, write_threaded_mbox  # noqa: E402

TARGET_FIRST_S = 180.0
TARGET_RSS_MB = 1536.0
TARGET_WEEKLY_S = 15.0
START = datetime(2021, 1, 4, tzinfo=UTC)
POLL_S = 0.1


@dataclass
class Stage:
    name: str
    started: float
    seconds: float | None = None  # as the CLI logged it; None: from the bench's clock
    ended: float | None = None
    tree_mb: float = 0.0
    proc_mb: float = 0.0
    cpu: float = 0.0  # user+system seconds of the whole tree during the stage (sampled)


@dataclass
class RunResult:
    label: str
    wall: float = 0.0
    stages: list[Stage] = field(default_factory=list)
    tree_mb: float = 0.0
    proc_mb: float = 0.0
    cpu: float = 0.0
    summary: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    failed: str = ""  # the CLI's last lines when it exited non-zero


def _hwm_mb(proc: psutil.Process) -> float:
    """A process's own peak RSS (VmHWM), else its current RSS."""
    try:
        with open(f"/proc/{proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return proc.memory_info().rss / 2**20
    except (OSError, psutil.Error):
        return 0.0


def _watch_stderr(pipe, res: RunResult, lock: threading.Lock, log: list[str]) -> None:  # noqa: ANN001
    """Turn the CLI's log lines into stages as they arrive."""
    for line in pipe:
        now = time.perf_counter()
        log.append(line)
        text = line.strip().removeprefix("mailaudit: ")
        with lock:
            current = res.stages[-1] if res.stages else None
            if text.startswith("stage ") and text.endswith(": started"):
                name = text[len("stage "):-len(": started")]
                if current is not None and current.ended is None:
                    current.ended = now
                res.stages.append(Stage("import: read+parse+store" if name == "import" else name, now))
            elif text.startswith("imported ") and current is not None and current.name.startswith("import"):
                current.ended = now
                res.stages.append(Stage("import: identity+threads", now))
            elif text.startswith("stage ") and ": done in " in text and current is not None:
                current.ended = now
                if not current.name.startswith("import"):
                    current.seconds = float(text.rsplit(" ", 2)[-2])
                elif current.name == "import: identity+threads":
                    pass
                else:  # no `imported` line (nothing to read): the whole stage was reading
                    current.seconds = float(text.rsplit(" ", 2)[-2])


def run_cli(label: str, work: Path, *args: str) -> RunResult:
    """Run the CLI once, sampling the process tree's memory; returns times and peaks per stage."""
    env = dict(os.environ, XDG_STATE_HOME=str(work / "state"), XDG_DATA_HOME=str(work / "data"),
               XDG_CONFIG_HOME=str(work / "config"), PYTHONUNBUFFERED="1")
    env.pop("MAILAUDIT_CONFIG", None)
    res = RunResult(label, load_before=os.getloadavg())
    lock = threading.Lock()
    log: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mailaudit", "-vv", "--db", str(work / "store.db"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    reader = threading.Thread(target=_watch_stderr, args=(proc.stderr, res, lock, log), daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    hwm: dict[int, float] = {}
    cpu: dict[int, float] = {}
    cpu_seen = 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        rss = []
        for p in tree:
            try:
                rss.append(p.memory_info().rss / 2**20)
            except psutil.Error:
                continue
            hwm[p.pid] = max(hwm.get(p.pid, 0.0), _hwm_mb(p))
            try:
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
            except psutil.Error:
                pass
        step, cpu_seen = sum(cpu.values()) - cpu_seen, sum(cpu.values())
        with lock:
            res.tree_mb = max(res.tree_mb, sum(rss))
            if res.stages:
                st = res.stages[-1]
                st.tree_mb = max(st.tree_mb, sum(rss))
                st.cpu += step
                st.proc_mb = max(st.proc_mb, max(rss, default=0.0))
        time.sleep(POLL_S)
    stdout = proc.communicate()[0]
    res.wall = time.perf_counter() - t0
    reader.join(timeout=5)
    res.load_after = os.getloadavg()
    res.proc_mb = max(hwm.values(), default=0.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res.cpu = max(cpu_seen, after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
    if proc.returncode != 0:
        res.failed = f"exited with {proc.returncode}: " + " | ".join(ln.strip() for ln in log[-2:])
    res.summary = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    end = t0 + res.wall
    for st in res.stages:
        if st.seconds is None:
            st.seconds = (st.ended or end) - st.started
    return res


def generate(work: Path, n: int, contacts: int, years: int, weekly: int, attachment_rate: float,
             seed: int) -> tuple[Path, Path, float]:
    """The big mbox and the weekly one (reused when --workdir already holds them for the same parameters)."""
    params = {"messages": n, "contacts": contacts, "years": years, "weekly": weekly,
              "attachment_rate": attachment_rate, "seed": seed, "generator": 2}
    big, week, stamp = work / "export" / "All mail.mbox", work / "weekly" / "week.mbox", work / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params and big.exists() and week.exists():
        return big, week, 0.0
    t0 = time.perf_counter()
    big.parent.mkdir(parents=True, exist_ok=True)
    week.parent.mkdir(parents=True, exist_ok=True)
    box = ThreadedMailbox(contacts, seed=seed, attachment_rate=attachment_rate)
    days = years * 365
    tails = write_threaded_mbox(big, n, box, START, days)
    write_threaded_mbox(week, weekly, box, START + timedelta(days=days), 7, tails, reply_share=0.3)
    stamp.write_text(json.dumps(params))
    return big, week, time.perf_counter() - t0


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


def report(*runs: RunResult) -> list[tuple[str, float, float, bool]]:
    print(f"{'stage':<28}{'time s':>9}{'cpu s':>8}{'tree MB':>10}{'proc MB':>10}   load 1/5/15 min")
    for res in runs:
        print(f"-- {res.label} (load before {_load(res.load_before)}, after {_load(res.load_after)})")
        for st in res.stages:
            print(f"{st.name:<28}{st.seconds:>9.1f}{st.cpu:>8.1f}{st.tree_mb:>10.0f}{st.proc_mb:>10.0f}")
        print(f"{'whole run (wall)':<28}{res.wall:>9.1f}{res.cpu:>8.1f}{res.tree_mb:>10.0f}{res.proc_mb:>10.0f}   "
              f"{_load(res.load_after)}")
        print(f"   {res.failed or res.summary[:160]}")
    if len(runs) < 2 or any(r.failed for r in runs):
        return [("every run finished", 0.0, 0.0, False)]
    first, second = runs
    checks = [("first run time s", first.wall, TARGET_FIRST_S, first.wall < TARGET_FIRST_S),
              ("first run peak RSS MB (tree)", first.tree_mb, TARGET_RSS_MB, first.tree_mb < TARGET_RSS_MB),
              ("weekly run time s", second.wall, TARGET_WEEKLY_S, second.wall < TARGET_WEEKLY_S)]
    for name, value, target, ok in checks:
        print(f"{name:<32}{value:>9.1f}  target < {target:<7.0f} {'PASS' if ok else 'MISS'}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--weekly", type=int, default=1_000, help="messages in the second (weekly) run")
    parser.add_argument("--attachment-rate", type=float, default=0.04, help="share of messages with a file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="where the mboxes, store and reports go (kept; mboxes reused)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    parser.add_argument("--keep-store", action="store_true",
                        help="continue with the store in --workdir (an interrupted first run: its import is skipped)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mailaudit-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        big, week, gen_s = generate(work, args.messages, args.contacts, args.years, args.weekly,
                                    args.attachment_rate, args.seed)
        for stale in [] if args.keep_store else work.glob("store.db*"):
            stale.unlink()
        shutil.rmtree(work / "reports", ignore_errors=True)
        as_of = START + timedelta(days=args.years * 365)
        print(f"e2e: {args.messages:,} messages ({big.stat().st_size / 1e6:,.0f} MB mbox), {args.contacts:,} "
              f"contacts, {args.years} years; weekly {args.weekly:,} ({week.stat().st_size / 1e6:,.1f} MB); "
              f"generated in {gen_s:.0f} s{' (reused)' if not gen_s else ''}; {os.cpu_count()} cores; {work}")
        common = ("run", "--no-sync", "--out-dir", str(work / "reports"))
        first = run_cli("first run", work, *common, "--import", str(big), "--as-of", f"{as_of:%Y-%m-%d}")
        if first.failed:
            report(first)
            return 1
        second = run_cli("weekly run", work, *common, "--import", str(week),
                         "--as-of", f"{as_of + timedelta(days=7):%Y-%m-%d}")
        store_mb = sum(p.stat().st_size for p in work.glob("store.db*")) / 1e6
        print(f"e2e: store {store_mb:,.0f} MB")
        checks = report(first, second)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.workdir is None:
            print(f"e2e: kept {work}")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
