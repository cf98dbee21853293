"""Deliver the report by mail: a compact HTML summary (inline styles, no scripts) with the full report
attached, over SMTP with TLS. The password comes from password_command / password_env, never the config."""

from __future__ import annotations

import html
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from mailaudit.errors import AuthError, ConfigError, SourceUnavailableError

log = logging.getLogger(__name__)
TIMEOUT_S = 60
STATUS_COLOURS = {"bruised": "#b42318", "one_way": "#b54708", "drifting": "#6941c6", "dormant": "#667085",
                  "healthy": "#067647"}


@dataclass(frozen=True)
class Summary:
    """What the mail says: the date, counts per status and the contacts that need attention."""

    as_of: str
    counts: dict[str, int]
    attention: list[tuple[str, str, str, str]]  # (name, address, status, plain-words flags)
    changes: list[str]


def build_message(summary: Summary, sender: str, to: list[str], report: Path | None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"mailaudit: your relationships as of {summary.as_of}"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "mailaudit.invalid")
    msg["Auto-Submitted"] = "auto-generated"  # our own report must never count as a relationship
    msg.set_content(render_text(summary))
    msg.add_alternative(render_html(summary), subtype="html")
    if report is not None:
        msg.add_attachment(report.read_bytes(), maintype="text", subtype="html", filename=report.name)
    return msg


def render_text(s: Summary) -> str:
    counts = ", ".join(f"{n} {status.replace('_', '-')}" for status, n in s.counts.items())
    lines = [f"mailaudit report as of {s.as_of}: {counts}.", ""]
    lines += [f"- {name} <{addr}>: {status.replace('_', '-')} ({flags})" for name, addr, status, flags in s.attention]
    lines += ["", *s.changes, "", "The full report is attached; open it in a browser."]
    return "\n".join(lines) + "\n"


def render_html(s: Summary) -> str:
    """Table layout and inline styles only: what Gmail, Outlook and Apple Mail all render."""
    esc = html.escape
    cells = "".join(
        f'<td style="padding:6px 10px;color:{STATUS_COLOURS.get(k, "#333")};font:14px sans-serif">'
        f"<b>{n}</b> {esc(k.replace('_', '-'))}</td>"
        for k, n in s.counts.items()
    )
    rows = "".join(
        f'<tr><td style="padding:4px 8px;font:14px sans-serif">{esc(name or addr)}<br>'
        f'<span style="color:#667085;font-size:12px">{esc(addr)}</span></td>'
        f'<td style="padding:4px 8px;font:14px sans-serif;color:{STATUS_COLOURS.get(status, "#333")}">'
        f"{esc(status.replace('_', '-'))}</td>"
        f'<td style="padding:4px 8px;font:13px sans-serif">{esc(flags)}</td></tr>'
        for name, addr, status, flags in s.attention
    )
    changes = "".join(f'<li style="font:13px sans-serif">{esc(c)}</li>' for c in s.changes)
    return (
        '<!doctype html><html><body style="margin:0;padding:16px;background:#ffffff">'
        f'<h1 style="font:600 18px sans-serif;margin:0 0 8px">Your relationships as of {esc(s.as_of)}</h1>'
        f'<table role="presentation" style="border-collapse:collapse"><tr>{cells}</tr></table>'
        '<h2 style="font:600 15px sans-serif;margin:16px 0 4px">Needs attention</h2>'
        f'<table style="border-collapse:collapse">{rows}</table>'
        + (f"<ul>{changes}</ul>" if changes else "")
        + '<p style="font:13px sans-serif;color:#667085">The full report is attached.</p></body></html>'
    )


def send(msg: EmailMessage, host: str, port: int, security: str, username: str, password: str,
         ca_file: str = "") -> None:
    """Send over SMTP: implicit TLS (ssl), STARTTLS, or plain only where the config allowed it."""
    context = ssl.create_default_context(cafile=ca_file or None)
    where = f"SMTP server {host}:{port}"
    try:
        if security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_S, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=TIMEOUT_S)
        with client:
            if security == "starttls":
                client.starttls(context=context)
            if username:
                client.login(username, password)
            client.send_message(msg)
    except smtplib.SMTPAuthenticationError:
        raise AuthError(f"{where}: the username or password was refused; check [report.email]") from None
    except ssl.SSLError as exc:
        raise SourceUnavailableError(f"{where}: TLS failed ({exc.reason}); check the port, security and "
                                     "tls_ca_file") from None
    except (TimeoutError, OSError, smtplib.SMTPException) as exc:
        raise SourceUnavailableError(f"{where}: could not deliver the report ({type(exc).__name__}); "
                                     "check host, port and security") from None
    log.info("report mailed to %d recipient(s)", len(msg.get_all("To", [])))


def check_security(security: str, allow_plaintext: bool) -> None:
    if security not in {"ssl", "starttls", "none"}:
        raise ConfigError(f"[report.email] security = {security!r}: use ssl, starttls or none")
    if security == "none" and not allow_plaintext:
        raise ConfigError("[report.email] security = 'none' sends your password in clear; "
                          "set allow_plaintext = true to accept that")
