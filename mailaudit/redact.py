"""Redaction for `mailaudit report --redact`: the audit and the page's inputs with every name and address
replaced by a stable pseudonym and every piece of mail text removed, before any renderer sees them."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import inspect
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mailaudit import flags as flag_rules
from mailaudit.addresses import normalise_address
from mailaudit.edges import merge_map
from mailaudit.relations import STATUSES, Relations
from mailaudit.report_history import EvidenceMessage, ReportRun

if TYPE_CHECKING:
    from mailaudit.report import ReportInputs, ReportPage

DOMAIN = "redacted.invalid"  # RFC 2606: can never be a real mail domain
OWNER = f"you@{DOMAIN}"
REDACTED = "[redacted]"
SALT_KEY = "redact_salt"  # in the store's meta table
_CODE_LENGTHS = (8, 16, 52)  # base32 characters of the keyed hash: 40 bits, longer only on a collision
_MONTHS = frozenset(m.casefold() for m in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                           "Nov", "Dec"))
_EDGE = re.compile(r"^(\(*)(.*?)([).,;:]*)$")  # a word and the punctuation around it
_NUMBER = re.compile(r"\d+(?:[-.:/]\d+)*")
_INTRO_TO = re.compile(r"(introduction to )(.+?)( and \d+ others?)?( on \d)")
_RUNS = re.compile(re.escape(REDACTED) + r"(?:\s+" + re.escape(REDACTED) + r")+")


@dataclass(frozen=True)
class RedactedRelations(Relations):
    """An audit passed through redact_relations; renderers say so (the page header, the JSON export)."""


def is_redacted(rel: Relations) -> bool:
    return isinstance(rel, RedactedRelations)


@dataclass(frozen=True)
class Pseudonyms:
    """Stable pseudonyms for one store: a keyed hash (HMAC-SHA256 with the store's random salt) of each contact
    key, so an address cannot be confirmed by hashing a guess. Aliases merged by [identity] merge share their
    contact's pseudonym; every owner address is OWNER."""

    salt: bytes = field(repr=False)
    me: frozenset[str] = frozenset()
    keyed: dict[str, str] = field(default_factory=dict)  # normalised alias address -> its contact key
    length: int = _CODE_LENGTHS[0]

    def code(self, kind: str, value: str) -> str:
        digest = hmac.new(self.salt, f"{kind}\0{value}".encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii")[: self.length].casefold()

    def contact_key(self, addr: str) -> str:
        addr = normalise_address(addr)
        return self.keyed.get(addr, addr)

    def address(self, addr: str) -> str:
        """'contact-<code>@redacted.invalid'; OWNER for the owner; '' stays ''."""
        key = self.contact_key(addr)
        if not key:
            return ""
        if key in self.me:
            return OWNER
        return f"contact-{self.code('contact', key)}@{DOMAIN}"

    def name(self, addr: str, name: str) -> str:
        """'Contact <CODE>' (the code of the address's pseudonym) when there was a name, else ''."""
        if not name:
            return ""
        key = self.contact_key(addr)
        if key in self.me:
            return "You"
        return f"Contact {self.code('contact', key).upper()}" if key else REDACTED

    def message_id(self, mid: str) -> str:
        """An opaque stand-in for a Message-ID (whose right-hand side names a host), the same in every run."""
        return f"<{self.code('message', mid.strip().strip('<>').strip())}@{DOMAIN}>"

    def for_contacts(self, keys: Iterable[str]) -> Pseudonyms:
        """These pseudonyms, with codes long enough that no two of `keys` share one. Two of 10,000 contacts
        share a 40-bit code about once in 20,000 reports; that report then uses longer codes for everyone."""
        keys = {self.contact_key(k) for k in keys} - self.me
        for length in _CODE_LENGTHS:
            candidate = replace(self, length=length)
            if len({candidate.code("contact", k) for k in keys}) == len(keys):
                return candidate
        return replace(self, length=_CODE_LENGTHS[-1])


def load_salt(conn: sqlite3.Connection) -> bytes:
    """The store's redaction key: 32 random bytes made on first use and kept in the meta table, so the same
    person gets the same pseudonym in every redacted report from this store, and in no other store."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)).fetchone()
    if row is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (SALT_KEY, secrets.token_hex(32)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)).fetchone()
    return bytes.fromhex(row[0])


def load_pseudonyms(
    conn: sqlite3.Connection, me: Iterable[str], merge: tuple[tuple[str, ...], ...] = ()
) -> Pseudonyms:
    """The store's pseudonyms, for an audit of owner addresses `me` under [identity] merge `merge`."""
    owner = frozenset(a for a in (normalise_address(x) for x in me) if a)
    return Pseudonyms(load_salt(conn), owner, merge_map(merge, set(owner)))


# --- the audit ---------------------------------------------------------------------------------------------


def redact_relations(rel: Relations, ps: Pseudonyms) -> RedactedRelations:
    """The audit with pseudonyms for contacts and the owner, opaque Message-IDs, names gone from flag details
    and merge suggestions; statuses, flags, dates and metrics as they were."""
    ps = ps.for_contacts(rel.contacts["contact"])
    c = rel.contacts.copy()
    c["name"] = [ps.name(a, n) for a, n in zip(c["contact"], c["name"], strict=True)]
    c["contact"] = [ps.address(a) for a in c["contact"]]
    rank = c["status"].map({s: i for i, s in enumerate(STATUSES)}).to_numpy()
    c = c.iloc[np.lexsort((c["contact"].to_numpy(), rank))].reset_index(drop=True)  # no order by real address
    f = rel.flags.copy()
    f["contact"] = [ps.address(a) for a in f["contact"]]
    f["evidence"] = [[ps.message_id(m) for m in ev] for ev in f["evidence"]]
    f["detail"] = [redact_detail(str(d)) for d in f["detail"]]
    merges = pd.DataFrame(
        [{"name": REDACTED, "contacts": sorted(ps.address(a) for a in m)} for m in rel.suggested_merges["contacts"]],
        columns=["name", "contacts"],
    )
    return RedactedRelations(
        as_of=rel.as_of, window_days=rel.window_days, me=(OWNER,) if rel.me else (), contacts=c, flags=f,
        suggested_merges=merges, model=dict(rel.model),
    )


def redact_detail(text: str) -> str:
    """A flag's sentence with only the rule's own words, numbers and dates left: the name of a third person
    goes, and so does any word the flag rules never write (an allow-list, so a new rule cannot leak)."""
    text = _INTRO_TO.sub(lambda m: m[0] if m[2] == "someone" else f"{m[1]}{REDACTED}{m[3] or ''}{m[4]}", text)
    words = _vocabulary()
    out: list[str] = []
    after_number = False
    for token in re.split(r"(\s+)", text):
        if not token.strip():
            out.append(token)
            continue
        lead, core, trail = _EDGE.match(token).groups()  # type: ignore[union-attr]
        number = bool(_NUMBER.fullmatch(core))
        month = after_number and core.casefold() in _MONTHS  # '12 May', never 'May' alone (a name)
        if core and core != REDACTED and not number and not month and not all(
            _known(w.casefold(), words) for w in core.split("-")
        ):
            core = REDACTED
        out.append(f"{lead}{core}{trail}")
        after_number = number and not trail
    return _RUNS.sub(REDACTED, "".join(out))


def _known(word: str, words: frozenset[str]) -> bool:
    return word in words or (word.endswith("s") and word[:-1] in words)  # the rules pluralise: '3 days'


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    """Every word in the flag rules' strings (not their docstrings)."""
    try:
        tree = ast.parse(inspect.getsource(flag_rules))
    except (OSError, TypeError, SyntaxError):  # no source shipped: keep numbers and dates only
        return frozenset()
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
        and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(w.casefold() for w in re.findall(r"[A-Za-z]+", node.value))
    return frozenset(words)


# --- the page ----------------------------------------------------------------------------------------------


def redact_page(page: ReportPage, ps: Pseudonyms) -> ReportPage:
    """The report page's data, redacted: the audit (redact_relations) and its inputs (redact_inputs), the
    cards re-ordered as the pseudonyms sort (ties were broken by the real addresses)."""
    from mailaudit.report import choose_cards

    rel = redact_relations(page.rel, ps)
    inputs = redact_inputs(page.inputs, ps.for_contacts(page.rel.contacts["contact"]))
    if inputs.cards is not None:
        rank = {c: i for i, c in enumerate(choose_cards(rel, len(rel.contacts)))}
        inputs = replace(inputs, cards=tuple(sorted(inputs.cards, key=lambda c: rank.get(c, len(rank)))))
    return replace(page, rel=rel, inputs=inputs)


def redact_inputs(inputs: ReportInputs, ps: Pseudonyms) -> ReportInputs:
    """Evidence without subject, excerpt or Gmail thread, under opaque Message-IDs; activity, cards and the
    previous report's statuses under pseudonyms; the report folder (a path with a user name) hidden."""
    evidence = {ps.message_id(mid): _evidence(ev, ps) for mid, ev in inputs.evidence.items()}
    previous = inputs.previous
    if previous is not None:
        previous = ReportRun(
            as_of=previous.as_of, created_at=previous.created_at,
            statuses={ps.address(k): v for k, v in previous.statuses.items()},
            flags={ps.address(k): v for k, v in previous.flags.items()},
        )
    cards = None if inputs.cards is None else tuple(ps.address(k) for k in inputs.cards)
    return replace(
        inputs, evidence=evidence, activity={ps.address(k): v for k, v in inputs.activity.items()}, cards=cards,
        previous=previous, report=replace(inputs.report, dir=REDACTED),
    )


def _evidence(ev: EvidenceMessage, ps: Pseudonyms) -> EvidenceMessage:
    return EvidenceMessage(
        message_id=ps.message_id(ev.message_id), ts=ev.ts, subject=REDACTED if ev.subject else "",
        from_addr=ps.address(ev.from_addr), from_name=ps.name(ev.from_addr, ev.from_name), thread=ev.thread,
        gm_thrid=None, acts=ev.acts, excerpt="",
    )
