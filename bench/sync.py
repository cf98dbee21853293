"""Benchmark `mailaudit sync` against mbsync (Debian's isync) on one generated mailbox in a real Dovecot.

Prints, in one run: initial sync, no-change sync and sync after 100 new messages, for both tools, and the
ratios against the issue's targets (initial <= 0.5x mbsync, no-change <= 3x, +100 <= 2x). Each figure is the
median of --repeat runs (default 3), the two tools taking turns, and every run is printed too.

    python bench/sync.py                 # 20,000 messages, ~1.7 GB, plain loopback (as in the issue)
    python bench/sync.py --messages 2000 --tls
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import checkout  # noqa: F401  (first: the checkout's mailaudit, not an installed one)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dovecot import Dovecot  # noqa: E402
from mailgen import rfc_date  # noqa: E402

WORDS = ["the", "budget", "review", "meeting", "project", "thanks", "please", "send", "update", "numbers", "deck",
         "draft", "contract", "call", "tomorrow", "week", "client", "proposal", "timeline", "invoice", "question",
         "answer", "team", "launch", "plan", "notes", "agenda"]
ME = "Pat Morgan <pat@example.com>"


def _text(rng: random.Random, size: int) -> str:
    words = []
    n = 0
    while n < size:
        w = rng.choice(WORDS)
        words.append(w)
        n += len(w) + 1
    text = " ".join(words)
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def generate(n: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """(INBOX, Sent) messages: mostly 1-20 KB of text (a third with an HTML alternative), threads of
    replies, and about 3% with 1-5 MB attachments, for ~85 KB a message on average."""
    rng = random.Random(seed)
    blobs = [base64.encodebytes(os.urandom(4 * 1024 * 1024)).replace(b"\n", b"\r\n") for _ in range(4)]
    inbox: list[bytes] = []
    sent: list[bytes] = []
    for i in range(n):
        mine = rng.random() < 0.2
        person = f"Person {rng.randrange(400)} <p{rng.randrange(400)}@example.org>"
        frm, to = (ME, person) if mine else (person, ME)
        head = [f"From: {frm}", f"To: {to}", f"Subject: {'Re: ' if i % 3 else ''}Topic {i // 3}",
                f"Date: {rfc_date(2024 + i * 2 // n, 1 + i % 12, 1 + i % 28, i % 24, i % 60)}",
                f"Message-ID: <bench{i}@example.org>", "MIME-Version: 1.0"]
        if i % 3:
            head += [f"In-Reply-To: <bench{i - 1}@example.org>", f"References: <bench{i - 1}@example.org>"]
        body = _text(rng, int(rng.triangular(800, 20000, 3000)))
        if rng.random() < 0.03:
            blob = rng.choice(blobs)[: rng.randrange(900_000, 4_300_000)]
            head.append('Content-Type: multipart/mixed; boundary="b1"')
            raw = ("\r\n".join(head) + "\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
                   + "\r\n--b1\r\nContent-Type: application/pdf; name=report.pdf\r\nContent-Disposition: "
                   "attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode()
            raw += blob + b"\r\n--b1--\r\n"
        elif rng.random() < 0.33:
            head.append('Content-Type: multipart/alternative; boundary="a1"')
            html = "<html><body><p>" + body.replace("\r\n", " ") + "</p></body></html>"
            raw = ("\r\n".join(head) + "\r\n\r\n--a1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
                   + "\r\n--a1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--a1--\r\n").encode()
        else:
            head.append("Content-Type: text/plain; charset=utf-8")
            raw = ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()
        (sent if mine else inbox).append(raw)
    return inbox, sent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return took


def ensure_tools() -> str:
    """Install what the bench runs when missing: Debian's isync (mbsync) and the test Dovecot, so the bench runs on a
    bare machine as the test suite does; returns mbsync's path."""
    need = [pkg for pkg, binary in (("isync", "mbsync"), ("dovecot-imapd", "dovecot"), ("openssl", "openssl"))
            if not shutil.which(binary) and not Path(f"/usr/sbin/{binary}").exists()]
    if need:
        print(f"installing Debian's {' '.join(need)}", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], check=True,
                       env=env, capture_output=True)
    return shutil.which("mbsync") or "mbsync"


def mbsync_config(d: Dovecot, tls: bool, maildir: Path) -> str:
    port = d.port if tls else d.plain_port
    security = f"SSLType IMAPS\nCertificateFile {d.ca_file}" if tls else "SSLType None\nAuthMechs LOGIN"
    # isync matches the certificate against DNS names only, so over TLS it connects to "localhost"
    return f"""IMAPAccount bench
Host {"localhost" if tls else "127.0.0.1"}
Port {port}
User {d.user}
PassCmd "printenv MAILAUDIT_TEST_PASSWORD"
{security}

IMAPStore bench-remote
Account bench

MaildirStore bench-local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-remote:
Near :bench-local:
Patterns INBOX Sent
Create Near
Sync Pull
SyncState *
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--tls", action="store_true", help="both tools over TLS (default: plain loopback)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each figure per tool, the tools taking turns (the median is shown)")
    args = ap.parse_args()
    mbsync = ensure_tools()
    root = Path(tempfile.mkdtemp(prefix="mailaudit-bench-"))
    os.chmod(root, 0o755)
    d = Dovecot(root / "dovecot")
    env = dict(os.environ, MAILAUDIT_TEST_PASSWORD=d.password)
    try:
        t = time.perf_counter()
        inbox, sent = generate(args.messages + 100 * args.repeat)
        extra = inbox[len(inbox) - 100 * args.repeat:]
        inbox = inbox[: len(inbox) - 100 * args.repeat]
        d.deliver("INBOX", inbox)
        d.deliver("Sent", sent, seen=True)
        total = sum(map(len, inbox)) + sum(map(len, sent))
        print(f"mailbox: {len(inbox) + len(sent)} messages ({len(inbox)} INBOX, {len(sent)} Sent), "
              f"{total / 1e9:.2f} GB; generated in {time.perf_counter() - t:.0f} s")
        d.start()
        admin = d.admin()  # let Dovecot index both folders first, for both tools alike
        for folder in ("INBOX", "Sent"):
            admin.select_folder(folder, readonly=True)
            admin.search(["ALL"])
        admin.logout()
        for f in d.maildir.rglob("*"):  # and read every file once: both tools start with a warm page cache
            if f.is_file():
                f.read_bytes()

        cfg = root / "config.toml"
        account = {"security": "ssl"} if args.tls else {"port": d.plain_port, "security": "none",
                                                          "allow_plaintext": True}
        cfg.write_text(d.toml("bench", **account))
        cfg.chmod(0o600)
        ours = [sys.executable, "-m", "mailaudit", "--db", str(root / "bench.db"), "--config", str(cfg),
                "--quiet", "sync"]
        rc = root / "mbsyncrc"
        (root / "mbsync-maildir").mkdir()
        rc.write_text(mbsync_config(d, args.tls, root / "mbsync-maildir"))
        theirs = [mbsync, "-c", str(rc), "-q", "bench"]

        fresh = {"mailaudit": lambda: [p.unlink() for p in root.glob("bench.db*")],
                 "mbsync": lambda: [shutil.rmtree(p) for p in (root / "mbsync-maildir").iterdir()]}
        runs: dict[str, dict[str, list[float]]] = {"mailaudit": {}, "mbsync": {}}

        def turns(stage: str, before: Callable[[str], None]) -> None:
            for _ in range(args.repeat):  # the tools take turns, so a slow spell of the host hits both
                for name, cmd in (("mailaudit", ours), ("mbsync", theirs)):
                    before(name)
                    runs[name].setdefault(stage, []).append(timed(cmd, env))

        turns("initial", lambda name: fresh[name]())
        turns("no-change", lambda name: None)
        batches = iter(extra[i:i + 100] for i in range(0, len(extra), 100))
        turns("+100 messages", lambda name: d.deliver("INBOX", next(batches)) if name == "mailaudit" else None)
        figures = {name: {stage: statistics.median(xs) for stage, xs in stages.items()}
                   for name, stages in runs.items()}
        for name, stages in runs.items():
            print(f"{name} runs: " + "; ".join(f"{stage} " + " ".join(f"{x:.2f}" for x in xs)
                                             for stage, xs in stages.items()))

        targets = {"initial": 0.5, "no-change": 3.0, "+100 messages": 2.0}
        print(f"\n{'':16}{'mailaudit':>11}{'mbsync':>10}{'ratio':>8}{'target':>9}")
        for stage, target in targets.items():
            a, b = figures["mailaudit"][stage], figures["mbsync"][stage]
            ok = "ok" if a / b <= target else "MISSED"
            print(f"{stage:16}{a:10.2f}s{b:9.2f}s{a / b:8.2f}{'<= ' + format(target, 'g'):>9}  {ok}")
        print(f"({'TLS' if args.tls else 'plain'} loopback; median wall time of {args.repeat} runs of each command, "
              "start-up included)")
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
