"""Every benchmark measures this checkout's mailaudit, never a copy installed earlier: imported first, it puts
the checkout at the head of sys.path and of PYTHONPATH (for the CLI and worker processes a bench starts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
