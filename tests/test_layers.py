"""The architecture's import contracts ([tool.importlinter] in pyproject.toml): the CLI alone uses click, the mail
path never loads pandas/scikit-learn/the report, and sources, parsing and threading never touch the store."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert "3 kept, 0 broken" in out, out[-3000:]
    assert code == 0
