"""The HTML report: gather what the page shows (the audit, evidence, activity, what changed), render it with
jinja2 (autoescape on) into one self-contained file, and write the report set."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from mailaudit import __version__
from mailaudit.config import Config, RelationsConfig, ReportConfig
from mailaudit.errors import SourceUnavailableError
from mailaudit.export import render_csv, render_json, write_file_atomic
from mailaudit.flags import BRUISING
from mailaudit.frames import model_card_dirs
from mailaudit.redact import is_redacted
from mailaudit.relations import STATUSES, Relations, as_of_from_date, audit_store
from mailaudit.report_history import (
    EvidenceMessage,
    ReportRun,
    StoreCounts,
    load_evidence,
    load_previous_run,
    load_store_counts,
    save_report_run,
)

ATTENTION = ("bruised", "one_way", "drifting")  # the statuses listed under "Needs attention"
TROUBLED = {"bruised", "one_way", "drifting"}
GMAIL_THREAD_URL = "https://mail.google.com/mail/u/0/#all/{}"
_RANK = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True)
class ReportInputs:
    """What the page shows beyond the audit; every field has an empty default, so a bare audit renders too."""

    evidence: dict[str, EvidenceMessage] = field(default_factory=dict)  # by Message-ID, with angle brackets
    activity: dict[str, list[tuple[int, bool, int, int, int]]] = field(default_factory=dict)  # see build_activity
    cards: tuple[str, ...] | None = None  # the contacts with a card; None: chosen from the audit
    previous: ReportRun | None = None
    counts: StoreCounts | None = None
    relations: RelationsConfig = field(default_factory=RelationsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    model_card: dict[str, object] = field(default_factory=dict)
    loaded: bool = False  # True when read from the store (audit_report); False: the audit alone


@dataclass(frozen=True)
class ReportPage:
    rel: Relations
    inputs: ReportInputs


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    latest: Path
    json: Path
    csv: Path


# --- gathering ---------------------------------------------------------------------------------------------


def audit_report(conn: sqlite3.Connection, cfg: Config, as_of: datetime | None = None) -> ReportPage:
    """Audit the store as of `as_of` (default now), load what the page shows, and record this run's statuses so
    the next report can say what changed (one record per report date)."""
    rc = cfg.report
    audit = audit_store(conn, cfg, as_of or as_of_from_date(None), months=rc.chart_months)
    rel = audit.rel
    cards = choose_cards(rel, rc.max_cards)
    wanted = set(cards)
    flags = rel.flags[rel.flags["contact"].isin(wanted).to_numpy()]
    evidence = load_evidence(conn, (m for ev in flags["evidence"] for m in ev), rc.excerpt_chars)
    day = rel.as_of.strftime("%Y-%m-%d")
    inputs = ReportInputs(
        evidence=evidence,
        activity=build_activity(audit.activity, cards),
        cards=tuple(cards),
        previous=load_previous_run(conn, day),
        counts=load_store_counts(conn, int(rel.as_of.timestamp())),
        relations=cfg.relations,
        report=rc,
        model_card=read_model_card(str(rel.model["version"]) if rel.model.get("version") else None),
        loaded=True,
    )
    save_report_run(conn, day, dict(zip(rel.contacts["contact"], rel.contacts["status"], strict=True)),
                    dict(zip(rel.contacts["contact"], rel.contacts["flags"], strict=True)))
    return ReportPage(rel, inputs)


def attention_order(rel: Relations) -> list[str]:
    """Contacts needing attention, most severe first: by status, then the weight of their flags (bruising 3,
    one-way 2), then the latest flag, then the address."""
    weight: dict[str, int] = {}
    latest: dict[str, int] = {}
    for contact, flag, ts in rel.flags[["contact", "flag", "ts"]].itertuples(index=False):
        weight[contact] = weight.get(contact, 0) + (3 if flag in BRUISING else 2)
        latest[contact] = max(latest.get(contact, 0), int(ts))
    rows = rel.contacts.loc[rel.contacts["status"].isin(ATTENTION).to_numpy(), ["contact", "status"]]
    keyed = [(_RANK[s], -weight.get(c, 0), -latest.get(c, 0), c) for c, s in rows.itertuples(index=False)]
    return [k[-1] for k in sorted(keyed)]


def choose_cards(rel: Relations, limit: int) -> list[str]:
    """Who gets a card: those needing attention (most severe first), then the busiest of the rest."""
    first = attention_order(rel)
    taken = set(first)
    c = rel.contacts
    volume = (c["sent"] + c["received"]).to_numpy()
    before = (c["sent_prev"] + c["received_prev"]).to_numpy()
    keys = c["contact"].to_numpy(dtype=object)
    order = np.lexsort((keys, -before, -volume))
    rest = [str(k) for k in keys[order] if k not in taken]
    return (first + rest)[:limit]


def build_activity(activity: pd.DataFrame, contacts: list[str]) -> dict[str, list[tuple[int, bool, int, int, int]]]:
    """Per contact: (month index = year*12 + month - 1, sent by me, messages, asks, gives) for each month and
    direction with mail, from the audit's activity (relations.ACTIVITY_COLUMNS)."""
    rows = activity[activity["contact"].isin(contacts).to_numpy()]
    out: dict[str, list[tuple[int, bool, int, int, int]]] = {}
    for contact, m, mine, n, asks, gives in rows.itertuples(index=False, name=None):
        out.setdefault(str(contact), []).append((int(m), bool(mine), int(n), int(asks), int(gives)))
    return out


def read_model_card(version: str | None, dirs: list[Path] | None = None) -> dict[str, object]:
    """From the card of model `version`: its macro F1 on labelled real mail, per act, and on all training data."""
    if not version:
        return {}
    for directory in model_card_dirs() if dirs is None else dirs:
        try:
            card = json.loads((directory / "model-card.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and card.get("version") == version:
            real = card.get("real_mail_metrics") or {}
            per_act = {a: (v or {}).get("f1") for a, v in (real.get("per_act") or {}).items()}
            return {
                "real_f1": real.get("macro_f1"), "real_n": real.get("n"), "per_act": per_act,
                "cv_f1": (card.get("cv_metrics") or {}).get("macro_f1"), "trained_at": card.get("trained_at"),
            }
    return {}


# --- the page --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The report's jinja2 environment: templates beside this module, autoescape always on."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mailaudit", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sentence"] = lambda s: s[:1].upper() + s[1:] if s else s
    env.filters["num"] = _num
    return env


@lru_cache(maxsize=1)
def script() -> tuple[Markup, str]:
    """The page's one inline script and its CSP source ('sha256-...'), so no other script can run."""
    env = environment()
    assert env.loader is not None
    text = env.loader.get_source(env, "report.js")[0].strip("\n")
    if "</" in text:
        raise ValueError("report.js must not contain '</'")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def _num(value: object, kind: str = "") -> str:
    """A metric for people: '–' when missing (NaN/None); kind 'pct', 'h' (hours) or 'd' (days)."""
    if value is None or not isinstance(value, (int, float, np.number)) or value != value:
        return "–"
    v = float(value)
    if kind == "pct":
        return f"{v * 100:.0f}%"
    if kind == "h":
        return f"{v:.1f} h" if v < 48 else f"{v / 24:.1f} days"
    if kind == "d":
        return f"{v:.0f} days"
    return f"{v:.2f}"


def render_report(rel: Relations, inputs: ReportInputs | None = None) -> bytes:
    """The report page as UTF-8 HTML: one file, no request to any host (CSP), everything from mail escaped."""
    from mailaudit.report_view import build_context

    js, source = script()
    ctx = build_context(rel, inputs or ReportInputs())
    html = environment().get_template("report.html").render(**ctx, script=js, script_src=source, version=__version__)
    return html.encode("utf-8")


def write_report_set(page: ReportPage, folder: Path) -> ReportFiles:
    """Write mailaudit-YYYY-MM-DD.html, latest.html and the JSON and CSV exports into `folder` (created 0700),
    each atomically and 0600: they hold excerpts of private mail. A redacted page is written as
    mailaudit-YYYY-MM-DD-redacted.* and latest-redacted.html, beside the private set, never over it."""

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SourceUnavailableError(
            f"cannot create the report folder {folder}: {exc.strerror}; set [report] dir or pass --out"
        ) from None
    tag = "-redacted" if is_redacted(page.rel) else ""
    stem = f"mailaudit-{page.rel.as_of:%Y-%m-%d}{tag}"
    files = ReportFiles(folder / f"{stem}.html", folder / f"latest{tag}.html", folder / f"{stem}.json",
                        folder / f"{stem}.csv")
    html = render_report(page.rel, page.inputs)
    write_file_atomic(files.json, render_json(page.rel))
    write_file_atomic(files.csv, render_csv(page.rel))
    write_file_atomic(files.html, html)
    write_file_atomic(files.latest, html)
    return files
