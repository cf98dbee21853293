"""Shared fixtures: a fresh store file per test and paths to the shared corpora."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mailaudit.config import Config
from mailaudit.store import open_store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def conn(db_path: Path) -> sqlite3.Connection:
    c = open_store(db_path)
    yield c
    c.close()


@pytest.fixture
def cfg() -> Config:
    return Config()


@pytest.fixture
def corpora() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared corpora not found at {SHARED} (they live beside the project in ../shared)")
    return SHARED


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess, so exit statuses and stderr are the user's."""
    return subprocess.run(
        [sys.executable, "-m", "mailaudit", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
