"""The simulator's sample reports in sample_reports/ must match what qrdoctor reports today.

Timings, ports, dates and redaction tokens differ from run to run; what must not go stale is the
shape: the checks, their statuses, their finding codes and the names of their facts.
Regenerate with: python scripts/sample_reports.py --only demo
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _shape(report: dict) -> list[tuple]:
    return [(c["id"], c["status"], sorted(f["code"] for f in c["findings"]), sorted(c["facts"]))
            for c in report["checks"]]


def test_demo_sample_report_is_current(tmp_path):
    spec = importlib.util.spec_from_file_location("sample_reports", ROOT / "scripts" / "sample_reports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.generate("demo", tmp_path)
    committed = json.loads((ROOT / "sample_reports" / "demo.json").read_text())
    current = json.loads(fresh["json"].read_text())
    assert _shape(committed) == _shape(current), (
        "sample_reports/demo.* are stale; regenerate them with: python scripts/sample_reports.py --only demo")
    for fmt in ("md", "html"):
        assert (ROOT / "sample_reports" / f"demo.{fmt}").stat().st_size > 1000
