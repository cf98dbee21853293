"""Read the TOML config into frozen dataclasses; find it via --config, $MAILAUDIT_CONFIG or the platform dir."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
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
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    parse: ParseConfig = field(default_factory=ParseConfig)
    threads: ThreadsConfig = field(default_factory=ThreadsConfig)
    import_: ImportConfig = field(default_factory=ImportConfig)
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
    return parse_config(raw, str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
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
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
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
