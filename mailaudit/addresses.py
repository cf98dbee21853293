"""Address normalisation and automated-sender detection: one address, one person key."""

from __future__ import annotations

import re

_GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}
_NOREPLY = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer[-_.]daemon|postmaster|bounces?|"
    r"notifications?|notify|alerts?|newsletters?|news|automated|auto[-_.]?confirm|daemon|"
    r"system|root|listserv|majordomo|mailman|owner-.*|.*-bounces?|.*-owner|.*-request|"
    r"noreply[-+.].*|no-reply[-+.].*|.*\+noreply)$"
)


def normalise_address(addr: str) -> str:
    """Lower-case; gmail/googlemail dots and +tags dropped and the domain written gmail.com."""
    addr = addr.strip().strip("<>").strip().lower()
    if "@" not in addr:
        return addr
    local, _, domain = addr.rpartition("@")
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def is_noreply(addr: str) -> bool:
    """A no-reply style or machine sender (noreply@, mailer-daemon@, list-bounces@ ...)."""
    local = addr.partition("@")[0]
    return bool(_NOREPLY.match(local))


def bulk_reason(headers: dict[str, str], from_addr: str) -> str:
    """Why a message is bulk or automated ('' when it is person-to-person mail).

    Headers are looked up lower-cased: list-id, list-unsubscribe, precedence, auto-submitted.
    """
    if headers.get("list-id"):
        return "list-id"
    if headers.get("list-unsubscribe"):
        return "list-unsubscribe"
    prec = headers.get("precedence", "").strip().lower()
    if prec in {"bulk", "list", "junk"}:
        return f"precedence-{prec}"
    auto = headers.get("auto-submitted", "").strip().lower()
    if auto and auto != "no":
        return "auto-submitted"
    if from_addr and is_noreply(from_addr):
        return "noreply-sender"
    return ""
