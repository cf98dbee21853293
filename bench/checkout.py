"""Every benchmark measures this checkout's mailaudit, never a copy installed earlier: imported first, it puts
the checkout at the head of sys.path and of PYTHONPATH (for the CLI and worker processes a bench starts), and
compiles its bytecode as `pip install` does. Where PYTHONDONTWRITEBYTECODE is set (this workplace sets it),
every process would otherwise compile the package from source: ~25 ms of each short command, which no
installed copy pays."""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
compileall.compile_dir(ROOT / "mailaudit", quiet=1)
