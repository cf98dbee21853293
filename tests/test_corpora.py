"""Real mail from ../shared/corpora: every corpus imports without a crash, counts add up, threads agree."""

from __future__ import annotations

import email
import hashlib
import mailbox
import re
from collections import defaultdict
from email.policy import compat32
from pathlib import Path

import pytest

from mailaudit.ingest import import_paths
from mailaudit.store import load_status, open_store

from conftest import run_cli

CORPORA = ["enron", "gmail_takeout", "mailing_lists", "mime_edge", "notmuch"]


@pytest.mark.parametrize("name", CORPORA)
def test_every_corpus_imports_without_crash(corpora, tmp_path, name):
    db = tmp_path / "c.db"
    res = run_cli("--db", str(db), "--quiet", "import", str(corpora / name))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    st = run_cli("--db", str(db), "status", "--json")
    assert st.returncode == 0
    assert '"messages": ' in st.stdout


def _true_key(msg: mailbox.mboxMessage) -> str:
    """An independent duplicate key: the same From, Date, Subject and body bytes."""
    body = msg.get_payload(decode=True) or b""
    key = f"{msg['From']}|{msg['Date']}|{msg['Subject']}|".encode() + body.strip()
    return hashlib.sha1(key).hexdigest()


def test_enron_counts_match_mailbox_module_minus_true_duplicates(corpora, tmp_path, cfg):
    enron = corpora / "enron"
    seen, keys = 0, set()
    for path in sorted(enron.glob("*/*.mbox")):
        for m in mailbox.mbox(path):
            seen += 1
            keys.add(_true_key(m))
    conn = open_store(tmp_path / "e.db")
    s = import_paths(conn, [str(enron)], cfg)
    assert s.seen == seen  # every message the mailbox module sees, we see
    stored = load_status(conn)["messages"]
    assert stored == s.new
    # our dedup may only merge true duplicates: never fewer than the distinct keys minus a tiny tolerance
    # for copies whose bodies differ only in whitespace
    assert abs(stored - len(keys)) <= max(10, len(keys) // 1000), (stored, len(keys))


def _header_threads(folder: Path) -> dict[str, int]:
    """Thread structure implied by Message-ID / In-Reply-To / References of the messages in a folder."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ids = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        msg = email.message_from_bytes(file.read_bytes(), policy=compat32)
        mid = re.findall(r"<([^>]+)>", str(msg.get("message-id", "")))
        if not mid:
            continue
        ids.append(mid[0])
        for ref in re.findall(r"<([^>]+)>", str(msg.get("references", "")) + str(msg.get("in-reply-to", ""))):
            parent[find(ref)] = find(mid[0])
    roots: dict[str, int] = {}
    return {m: roots.setdefault(find(m), len(roots)) for m in ids}


@pytest.mark.parametrize("folder", ["lkml", "default"])
def test_notmuch_threads_match_header_structure(corpora, tmp_path, cfg, folder, capsys):
    path = corpora / "notmuch" / folder
    truth = _header_threads(path)
    conn = open_store(tmp_path / "n.db")
    import_paths(conn, [str(path)], cfg)
    ours = dict(conn.execute("SELECT i.msgid, m.thread_id FROM message_ids i JOIN messages m ON m.id=i.message"))
    common = [m for m in truth if m in ours]
    assert len(common) >= len(truth) * 0.95
    groups_truth: dict[int, set[str]] = defaultdict(set)
    groups_ours: dict[int, set[str]] = defaultdict(set)
    for m in common:
        groups_truth[truth[m]].add(m)
        groups_ours[ours[m]].add(m)
    exact = sum(1 for g in groups_truth.values() if g in list(groups_ours.values()))
    agreement = exact / len(groups_truth)
    with capsys.disabled():
        print(f"\n[threads] notmuch/{folder}: {exact}/{len(groups_truth)} header threads reproduced exactly "
              f"({agreement:.1%}), {len(common)} messages")
    assert agreement >= 0.95
