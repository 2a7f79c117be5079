"""What a fresh interpreter loads: for the start-up tests (no DICOM library before it is needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pynetdicom", "pydicom", "httpx", "numpy")


def heavy_after_importing(modules: Iterable[str]) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has loaded after importing ``modules``."""
    code = ("import importlib, json, sys\n"
            f"for m in {sorted(modules)!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
