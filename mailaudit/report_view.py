"""What the report template shows, as plain values: the headline, attention lists, table rows, cards, chart
geometry and the method section. No wording about flags here: the template says what each flag means."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mailaudit.flags import DIRECTIONS, FLAGS
from mailaudit.redact import is_redacted
from mailaudit.relations import STATUSES, Relations, month_index
from mailaudit.report import (
    ATTENTION,
    GMAIL_THREAD_URL,
    TROUBLED,
    ReportInputs,
    attention_order,
    choose_cards,
)
from mailaudit.report_history import EvidenceMessage

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# chart geometry, in SVG user units (the charts scale to their container)
ACT_W, ACT_H, ACT_LEFT, ACT_RIGHT, ACT_MID, ACT_HALF = 480, 128, 26, 6, 58, 42
OV_W, OV_H, OV_LEFT, OV_RIGHT, OV_TOP, OV_BOTTOM = 720, 340, 48, 16, 14, 40


def build_context(rel: Relations, inputs: ReportInputs) -> dict[str, Any]:
    """Everything report.html reads, derived from the audit and the inputs."""
    rc = inputs.report
    c = rel.contacts
    cards = list(inputs.cards) if inputs.cards is not None else choose_cards(rel, rc.max_cards)
    anchor = {contact: f"c{i}" for i, contact in enumerate(cards)}
    names = dict(zip(c["contact"], c["name"], strict=True))
    flags = _flags_by_contact(rel)
    rows = {r["contact"]: r for r in c.to_dict("records")}
    order = attention_order(rel)

    def item(contact: str, only_me: bool = False) -> dict[str, Any]:
        r = rows[contact]
        fl = [f for f in flags.get(contact, []) if f["by"] == "me" or not only_me]
        return {"contact": contact, "name": r["name"] or contact, "status": r["status"], "card": anchor.get(contact),
                "flags": fl, "sent": int(r["sent"]), "received": int(r["received"])}

    attention = [item(x) for x in order]
    bruising = [item(x, only_me=True) for x in order if any(f["by"] == "me" for f in flags.get(x, []))]
    present = sorted({(f["flag"], f["by"]) for fl in flags.values() for f in fl}, key=lambda k: FLAGS.index(k[0]))
    return {
        "as_of": _day(rel.as_of),
        "as_of_iso": rel.as_of.strftime("%Y-%m-%d"),
        "window": _windows(rel, inputs),
        "total": len(c),
        "counts": _counts(rel, inputs),
        "changes": _changes(rel, inputs, names, anchor),
        "attention": attention[: rc.max_attention],
        "attention_more": max(0, len(attention) - rc.max_attention),
        "bruising": bruising[: rc.max_attention],
        "bruising_more": max(0, len(bruising) - rc.max_attention),
        "statuses": STATUSES,
        "flag_options": present,
        "rows": [_row(rows[x], flags.get(x, []), anchor.get(x)) for x in c["contact"]],
        "cards": [_card(rows[x], flags.get(x, []), anchor[x], rel, inputs) for x in cards],
        "cards_more": max(0, len(c) - len(cards)),
        "overview": _overview(rel, anchor),
        "merges": [
            {"name": m["name"], "contacts": [(a, anchor.get(a)) for a in m["contacts"]]}
            for m in rel.suggested_merges.to_dict("records")
        ],
        "method": _method(rel, inputs),
        "report_cfg": rc,
        "loaded": inputs.loaded,
        "redacted": is_redacted(rel),
    }


def _flags_by_contact(rel: Relations) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for contact, flag, by, ts, evidence, detail in rel.flags.itertuples(index=False):
        out.setdefault(contact, []).append(
            {"flag": flag, "by": by, "ts": int(ts), "day": _day(_dt(ts)), "detail": detail, "evidence": evidence}
        )
    for fl in out.values():
        fl.sort(key=lambda f: (FLAGS.index(f["flag"]), DIRECTIONS.index(f["by"])))
    return out


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


def _day(dt: datetime) -> str:
    return f"{dt.day} {_MONTHS[dt.month - 1]} {dt.year}"


def _windows(rel: Relations, inputs: ReportInputs) -> dict[str, Any]:
    """The report window is the `window_days` before as_of; shown as whole days, the last being as_of - 1 s."""
    span = timedelta(days=rel.window_days)
    end = rel.as_of - timedelta(seconds=1)
    return {
        "days": rel.window_days,
        "start": _day(rel.as_of - span), "end": _day(end),
        "prev_start": _day(rel.as_of - 2 * span), "prev_end": _day(rel.as_of - span - timedelta(seconds=1)),
        "dormant_since": _day(rel.as_of - timedelta(days=inputs.relations.dormant_days)),
    }


def _counts(rel: Relations, inputs: ReportInputs) -> list[dict[str, Any]]:
    now = rel.contacts["status"].value_counts()
    prev = inputs.previous
    before: dict[str, int] = {}
    if prev is not None:
        for s in prev.statuses.values():
            before[s] = before.get(s, 0) + 1
    return [
        {"status": s, "n": int(now.get(s, 0)), "delta": None if prev is None else int(now.get(s, 0)) - before.get(s, 0)}
        for s in STATUSES
    ]


def _changes(
    rel: Relations, inputs: ReportInputs, names: dict[str, str], anchor: dict[str, str]
) -> dict[str, Any] | None:
    """New bruised, one-way, drifting and dormant contacts, and recovered ones, against the previous report."""
    prev = inputs.previous
    if prev is None:
        return None
    groups: dict[str, list[dict[str, Any]]] = {s: [] for s in (*ATTENTION, "dormant", "recovered")}
    for contact, status in zip(rel.contacts["contact"], rel.contacts["status"], strict=True):
        was = prev.statuses.get(contact)
        entry = {"contact": contact, "name": names.get(contact) or contact, "card": anchor.get(contact), "was": was}
        if status in groups and status != was:
            groups[status].append(entry)
        elif status == "healthy" and was in TROUBLED:
            groups["recovered"].append(entry)
    return {"since": _day(datetime.strptime(prev.as_of, "%Y-%m-%d").replace(tzinfo=UTC)),
            "groups": [(k, v) for k, v in groups.items() if v]}


def _ratio(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"


def _row(r: dict[str, Any], fl: list[dict[str, Any]], card: str | None) -> dict[str, Any]:
    name = r["name"] or ""
    recip = r["reciprocity"]
    return {
        "contact": r["contact"], "name": name, "status": r["status"], "rank": STATUSES.index(r["status"]),
        "card": card, "tokens": " ".join(f"{f['flag']}:{f['by']}" for f in fl), "flags": fl,
        "sent": int(r["sent"]), "received": int(r["received"]),
        "asks": f"{int(r['asks_by_them'])} / {int(r['asks_by_me'])}",
        "gives": f"{int(r['gives_by_them'])} / {int(r['gives_by_me'])}",
        "recip": _ratio(recip), "recip_prev": _ratio(r["reciprocity_prev"]),
        "recip_v": -1 if recip != recip else round(float(recip), 3),
        "last": r["last_contact"], "q": f"{name} {r['contact']}".casefold(),
    }


def _card(
    r: dict[str, Any], fl: list[dict[str, Any]], anchor: str, rel: Relations, inputs: ReportInputs
) -> dict[str, Any]:
    name = r["name"] or r["contact"]
    return {
        "id": anchor, "contact": r["contact"], "name": name, "named": bool(r["name"]), "status": r["status"],
        "flags": fl,
        "metrics": r, "chart": _activity_chart(inputs.activity.get(r["contact"], []), rel, inputs),
        **_evidence(fl, name, rel, inputs),
    }


def _evidence(fl: list[dict[str, Any]], name: str, rel: Relations, inputs: ReportInputs) -> dict[str, Any]:
    """The card's evidence as threads (latest first), each message with who wrote to whom, acts and excerpt."""
    cites: dict[str, list[tuple[str, str]]] = {}
    for f in fl:
        for mid in f["evidence"]:
            cites.setdefault(mid, []).append((f["flag"], f["by"]))
    found = sorted((inputs.evidence[m] for m in cites if m in inputs.evidence), key=lambda e: (-e.ts, e.message_id))
    limit = inputs.report.max_evidence
    shown = found[:limit]
    unknown = [m for m in cites if m not in inputs.evidence]
    threads: dict[int, list[EvidenceMessage]] = {}
    for ev in shown:
        threads.setdefault(ev.thread, []).append(ev)
    me = set(rel.me)
    out = []
    for msgs in threads.values():
        msgs.sort(key=lambda e: (e.ts, e.message_id))
        thrid = next((e.gm_thrid for e in msgs if e.gm_thrid), None)
        out.append({
            "subject": msgs[0].subject, "gmail": _gmail_url(thrid),
            "messages": [{
                "day": _day(_dt(e.ts)), "mine": e.from_addr in me,
                "sender": "You" if e.from_addr in me else (e.from_name or e.from_addr or name),
                "recipient": name if e.from_addr in me else "you",
                "subject": e.subject, "acts": e.acts, "excerpt": e.excerpt, "cites": cites[e.message_id],
                "message_id": e.message_id,
            } for e in msgs],
        })
    return {"threads": out, "evidence_more": max(0, len(found) - limit), "evidence_ids": unknown[:limit]}


def _gmail_url(thrid: str | None) -> str | None:
    """Gmail's web link to a thread: its X-GM-THRID (stored as a decimal string) in hex."""
    if not thrid:
        return None
    try:
        return GMAIL_THREAD_URL.format(format(int(thrid), "x"))
    except ValueError:
        return None


def _activity_chart(rows: list[tuple[int, bool, int, int, int]], rel: Relations, inputs: ReportInputs) -> dict:
    """Bars per month: up = the owner's mail to the contact, down = theirs; markers where asks or gives went."""
    months = inputs.report.chart_months
    last = month_index(rel.as_of)
    first = last - months + 1
    data = {(m, mine): (n, a, g) for m, mine, n, a, g in rows}
    top = max([n for n, _, _ in data.values()] or [1])
    step = (ACT_W - ACT_LEFT - ACT_RIGHT) / months
    bar = max(2.0, round(step * 0.66, 1))
    cols = []
    every = max(1, months // 8)
    shown_year = None
    for k in range(months):
        m = first + k
        up, down = data.get((m, True), (0, 0, 0)), data.get((m, False), (0, 0, 0))
        label = f"{_MONTHS[m % 12]} {m // 12}"
        x = round(ACT_LEFT + k * step + (step - bar) / 2, 1)
        tick = ""
        if k % every == 0:
            tick = _MONTHS[m % 12] + ("" if m // 12 == shown_year else f" {m // 12}")
            shown_year = m // 12
        cols.append({
            "x": x, "cx": round(x + bar / 2, 1),
            "up": round(up[0] / top * ACT_HALF, 1), "down": round(down[0] / top * ACT_HALF, 1),
            "mine": up, "theirs": down, "tick": tick,
            "title": f"{label}: you sent {_n(up[0], 'message')} ({_acts(up)}); they sent {_n(down[0], 'message')}"
                     f" ({_acts(down)})",
            "empty": up[0] == 0 and down[0] == 0,
        })
    start = rel.as_of - timedelta(days=rel.window_days)
    pos = (start.year * 12 + start.month - 1 - first) + (start.day - 1) / 31
    wx = round(ACT_LEFT + max(0.0, pos) * step, 1)
    return {"w": ACT_W, "h": ACT_H, "left": ACT_LEFT, "mid": ACT_MID, "half": ACT_HALF, "bar": bar, "cols": cols,
            "top": top, "window_x": wx, "window_w": round(ACT_W - ACT_RIGHT - wx, 1)}


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _acts(v: tuple[int, int, int]) -> str:
    return f"{_n(v[1], 'ask')}, {_n(v[2], 'give')}"


def _overview(rel: Relations, anchor: dict[str, str]) -> dict[str, Any]:
    """Every contact as a dot: x = balance of give and take in the window (-1: you give everything, +1: they
    do), y = messages in the window on a log scale; coloured by status, the troubled drawn last (on top)."""
    c = rel.contacts
    to_me = (c["gives_by_them"] + c["asks_by_me"]).to_numpy(dtype=float)
    to_them = (c["gives_by_me"] + c["asks_by_them"]).to_numpy(dtype=float)
    balance = (to_me - to_them) / np.maximum(to_me + to_them, 1)
    volume = (c["sent"] + c["received"]).to_numpy()
    vmax = max(int(volume.max()) if len(volume) else 1, 1)
    plot_w, plot_h = OV_W - OV_LEFT - OV_RIGHT, OV_H - OV_TOP - OV_BOTTOM

    def y_of(v: float) -> float:
        return round(OV_TOP + plot_h - math.log1p(v) / math.log1p(vmax) * plot_h, 1)

    golden = 0.6180339887
    contacts, names, statuses = (c[k].tolist() for k in ("contact", "name", "status"))
    xs = (OV_LEFT + (balance + 1) / 2 * plot_w + ((np.arange(len(c)) * golden) % 1 - 0.5) * 10).clip(
        OV_LEFT, OV_W - OV_RIGHT).round(1).tolist()
    ys = (OV_TOP + plot_h - np.log1p(volume) / math.log1p(vmax) * plot_h).round(1).tolist()
    points = []
    for i in np.argsort(-c["status"].map(STATUSES.index).to_numpy(), kind="stable").tolist():
        contact, status = contacts[i], statuses[i]
        points.append({
            "x": xs[i], "y": ys[i], "status": status, "card": anchor.get(contact),
            "title": f"{names[i] or contact} ({contact}): {status}, {_n(int(volume[i]), 'message')}, "
                     f"balance {balance[i]:+.2f}",
        })
    ticks = [v for v in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if v <= vmax]
    return {
        "w": OV_W, "h": OV_H, "left": OV_LEFT, "right": OV_W - OV_RIGHT, "top": OV_TOP, "bottom": OV_TOP + plot_h,
        "mid": OV_LEFT + plot_w / 2, "points": points,
        "r": 4.5 if len(points) <= 300 else 3 if len(points) <= 2000 else 2.2,  # dense networks: smaller dots
        "yticks": [(v, y_of(v)) for v in ticks],
        "xticks": [(f"{b:+.1f}" if b else "0", round(OV_LEFT + (b + 1) / 2 * plot_w, 1))
                   for b in (-1, -0.5, 0, 0.5, 1)],
    }


def _method(rel: Relations, inputs: ReportInputs) -> dict[str, Any]:
    cfg = inputs.relations
    card = inputs.model_card
    return {
        "cfg": cfg,
        "keys": [(f.name, getattr(cfg, f.name)) for f in fields(cfg)],
        "report_keys": [(f.name, getattr(inputs.report, f.name)) for f in fields(inputs.report)],
        "model": rel.model.get("version"),
        "real_f1": card.get("real_f1"), "real_n": card.get("real_n"), "cv_f1": card.get("cv_f1"),
        "per_act": card.get("per_act") or {},
        "counts": inputs.counts,
        "me": rel.me,
    }
