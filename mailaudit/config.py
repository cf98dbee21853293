"""Read the TOML config into frozen dataclasses; find it via --config, $MAILAUDIT_CONFIG or the platform dir."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import tomllib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

from mailaudit.errors import ConfigError

APP = "mailaudit"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


@dataclass(frozen=True)
class StoreConfig:
    path: str = ""  # empty: <platform data dir>/mailaudit.db


@dataclass(frozen=True)
class IdentityConfig:
    addresses: tuple[str, ...] = ()
    merge: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ParseConfig:
    body_max_chars: int = 65536
    own_text_max_chars: int = 16384
    html_max_bytes: int = 2_000_000


@dataclass(frozen=True)
class ThreadsConfig:
    subject_window_days: int = 30


@dataclass(frozen=True)
class ImportConfig:
    batch_size: int = 500


@dataclass(frozen=True)
class RelationsConfig:
    """Every number of the relationship rules; the defaults are the specification."""

    window_days: int = 90  # the report window; the previous window is as long, just before it
    glomming_burst_asks: int = 3
    glomming_burst_hours: int = 24
    glomming_week_asks: int = 5
    glomming_week_days: int = 7
    asks_only_min_threads: int = 3
    asks_only_ask_share: float = 0.75
    dormant_then_ask_silence_days: int = 180
    no_thanks_days: int = 14
    no_follow_up_days: int = 14
    ignored_reciprocal_days: int = 14
    never_offers_min_asks: int = 3
    stranger_min_prior_each_way: int = 1
    stranger_many_recipients: int = 3
    stranger_many_min_prior_each_way: int = 3
    drifting_drop: float = 0.3
    drifting_min_messages: int = 4
    dormant_days: int = 180

    def __post_init__(self) -> None:
        for name in ("asks_only_ask_share", "drifting_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"[relations] {name} = {getattr(self, name)} must be between 0 and 1")


@dataclass(frozen=True)
class ReportConfig:
    """The HTML report: where the report files go and how much of the long tail the page shows in full."""

    dir: str = "reports"  # relative paths are taken from the current directory
    max_attention: int = 100  # contacts listed under "Needs attention"; the rest are in the table
    max_cards: int = 200  # contacts with a card (chart, metrics, evidence), most pressing first
    max_evidence: int = 12  # evidence messages shown per card, the latest first
    excerpt_chars: int = 240  # of each evidence message's own text
    chart_months: int = 24  # months in each card's activity chart, ending at the report date


@dataclass(frozen=True)
class SyncConfig:
    batch_size: int = 500  # messages fetched and committed per transaction
    text_prefix_bytes: int = 65536  # of each message's text; attachments beyond it are never downloaded
    timeout_seconds: int = 60  # socket timeout for connect and each read
    reconnect_attempts: int = 6  # after a dropped connection, with backoff 1, 2, 4 ... s
    max_backoff_seconds: int = 30


SECURITY = ("ssl", "starttls", "none")
AUTH = ("password", "oauth2")
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GMAIL_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True)
class AccountConfig:
    """One [[accounts]] table: an IMAP mailbox. Secrets are fetched at login, never stored here."""

    name: str = ""
    host: str = ""
    username: str = ""
    port: int = 0  # 0: 993 for ssl, 143 for starttls and none
    security: str = "ssl"
    allow_plaintext: bool = False
    auth: str = "password"
    password_command: tuple[str, ...] = ()
    password_env: str = ""
    password_keyring: bool = False
    folders: tuple[str, ...] = ()
    since: str = ""
    tls_ca_file: str = ""
    oauth2_client_id: str = ""
    oauth2_client_secret: str = ""
    oauth2_auth_url: str = GOOGLE_AUTH_URL
    oauth2_token_url: str = GOOGLE_TOKEN_URL
    oauth2_scope: str = GMAIL_SCOPE

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "ssl" else 143)

    def since_ts(self, now: float) -> int | None:
        """The first-sync horizon as epoch seconds, or None for everything."""
        return parse_since(self.since, now) if self.since else None


_SINCE = re.compile(r"^\s*(\d+)\s*(day|week|month|year)s?\s*$", re.IGNORECASE)
_SINCE_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


def parse_since(value: str, now: float) -> int:
    """'2 years', '6 months', '3 weeks', '10 days' before `now`, or an ISO date 'YYYY-MM-DD'."""
    m = _SINCE.match(value)
    if m:
        return int(now) - int(m.group(1)) * _SINCE_DAYS[m.group(2).lower()] * 86400
    try:
        return int(datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise ValueError(f"{value!r} is neither 'N days|weeks|months|years' nor a date YYYY-MM-DD") from None


@dataclass(frozen=True)
class EmailConfig:
    """[report.email]: mail the weekly summary with the full report attached. Empty `to` = off."""

    to: tuple[str, ...] = ()
    sender: str = ""
    host: str = ""
    port: int = 0  # 0: 465 for ssl, 587 for starttls, 25 for none
    security: str = "starttls"
    allow_plaintext: bool = False
    username: str = ""
    password_command: tuple[str, ...] = ()
    password_env: str = ""
    password_keyring: bool = False
    tls_ca_file: str = ""
    name: str = "report.email"  # how errors and the keyring name this mailbox

    @property
    def effective_port(self) -> int:
        return self.port or {"ssl": 465, "starttls": 587}.get(self.security, 25)


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    parse: ParseConfig = field(default_factory=ParseConfig)
    threads: ThreadsConfig = field(default_factory=ThreadsConfig)
    import_: ImportConfig = field(default_factory=ImportConfig)
    relations: RelationsConfig = field(default_factory=RelationsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    accounts: tuple[AccountConfig, ...] = ()
    report_email: EmailConfig = field(default_factory=EmailConfig)
    source: str = "<defaults>"

    def db_path(self, override: str | None = None) -> Path:
        """The store path: --db wins, then [store] path, then the platform data dir."""
        if override:
            return Path(override).expanduser()
        if self.store.path:
            return Path(self.store.path).expanduser()
        return data_dir() / "mailaudit.db"


_SECTIONS: dict[str, type] = {
    "store": StoreConfig,
    "identity": IdentityConfig,
    "parse": ParseConfig,
    "threads": ThreadsConfig,
    "import": ImportConfig,
    "relations": RelationsConfig,
    "sync": SyncConfig,
    "report": ReportConfig,
}


def find_config(explicit: str | None) -> Path | None:
    """--config, then $MAILAUDIT_CONFIG, then <config dir>/config.toml if it exists."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("MAILAUDIT_CONFIG")
    if env:
        return Path(env).expanduser()
    default = config_dir() / "config.toml"
    return default if default.exists() else None


def load_config(explicit: str | None = None) -> Config:
    """Load and validate the config; a missing explicit file or a bad value is a ConfigError."""
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found: create it from config.example.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    cfg = parse_config(raw, str(path))
    _warn_if_exposed(path, raw)
    return cfg


_SECRET_KEYS = ("oauth2_client_secret", "password_command", "password_env", "username")


def _warn_if_exposed(path: Path, raw: dict[str, Any]) -> None:
    """A config others can read that says how to reach a secret is worth a warning (not an error)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not mode & 0o044:
        return
    text = json.dumps(raw)
    found = [k for k in _SECRET_KEYS if f'"{k}"' in text]
    if found:
        logging.getLogger("mailaudit").warning(
            "%s is readable by other users and holds %s; run chmod 600 %s", path, ", ".join(found), path
        )


def parse_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "accounts":
            kwargs["accounts"] = _accounts(value, source)
            continue
        if name == "report" and isinstance(value, dict) and "email" in value:
            value = dict(value)
            email = value.pop("email")
            if "from" in email:  # `from` is the natural TOML key; Python needs another name
                email = {("sender" if k == "from" else k): v for k, v in email.items()}
            kwargs["report_email"] = _section(EmailConfig, "report.email", email, source)
            if not value and name not in _SECTIONS:
                continue
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{name}]; see config.example.toml for the known ones")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        key = "import_" if name == "import" else name
        kwargs[key] = _section(cls, name, value, source)
    return Config(source=source, **kwargs)


def _section(cls: type, name: str, values: dict[str, Any], source: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{key}' in [{name}]; see config.example.toml")
        out[key] = _coerce(known[key].default, value, f"[{name}] {key}", source)
    return cls(**out)


def _coerce(default: Any, value: Any, where: str, source: str) -> Any:
    """Check a value against the type of its default; tuples of strings (or of lists) come from TOML arrays."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and (value > 0 or value == default == 0)  # 0: auto
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, list) and all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value
        ):
            return tuple(tuple(v) for v in value)
        ok = False
    else:
        ok = True
    if not ok:
        kind = type(default).__name__ if not isinstance(default, tuple) else "list of strings"
        raise ConfigError(f"{source}: {where} = {value!r} is not a valid {kind}; fix it in the config file")
    return float(value) if isinstance(default, float) else value


_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _accounts(value: Any, source: str) -> tuple[AccountConfig, ...]:
    """[[accounts]] tables -> AccountConfig, each checked on its own and for unique names."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{source}: accounts must be written as [[accounts]] tables")
    out: list[AccountConfig] = []
    for i, table in enumerate(value, start=1):
        named = f" ({table['name']})" if isinstance(table.get("name"), str) else ""
        label = f"[[accounts]] #{i}{named}"
        if "password" in table:
            raise ConfigError(
                f"{source}: {label}: a password never goes in the config file; "
                "use password_command, password_env or password_keyring"
            )
        acct = _section(AccountConfig, f"accounts #{i}{named}", table, source)
        _check_account(acct, label, source)
        if any(a.name == acct.name for a in out):
            raise ConfigError(f"{source}: two [[accounts]] are named '{acct.name}'; names must be unique")
        out.append(acct)
    return tuple(out)


def _check_account(a: AccountConfig, label: str, source: str) -> None:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{source}: {label}: {what}")

    for key in ("name", "host", "username"):
        if not getattr(a, key):
            raise bad(f"'{key}' is required")
    for key in ("password_command", "folders"):
        if not all(isinstance(v, str) and v for v in getattr(a, key)):
            raise bad(f"{key} must be a list of non-empty strings")
    if not _ACCOUNT_NAME.match(a.name):
        raise bad(f"name {a.name!r} may only hold letters, digits, '.', '_' and '-'")
    if a.security not in SECURITY:
        raise bad(f"security = {a.security!r}; use one of {', '.join(SECURITY)}")
    if a.security == "none" and not a.allow_plaintext:
        raise bad('security = "none" sends the password in clear text; add allow_plaintext = true if you mean it')
    if not 0 <= a.port <= 65535:
        raise bad(f"port = {a.port} is not a TCP port")
    if a.auth not in AUTH:
        raise bad(f"auth = {a.auth!r}; use one of {', '.join(AUTH)}")
    sources = [k for k in ("password_command", "password_env", "password_keyring") if getattr(a, k)]
    if a.auth == "password" and len(sources) != 1:
        raise bad(
            "auth = \"password\" needs exactly one of password_command, password_env or password_keyring"
            + (f" (found {', '.join(sources)})" if sources else "")
        )
    if a.auth == "oauth2":
        if sources:
            raise bad(f"auth = \"oauth2\" takes no {sources[0]}; the token comes from `mailaudit auth {a.name}`")
        if not a.oauth2_client_id:
            raise bad('auth = "oauth2" needs oauth2_client_id (your own OAuth client, of type "Desktop app")')
    if a.since:
        try:
            parse_since(a.since, time.time())
        except ValueError as exc:
            raise bad(f"since = {exc}") from None
