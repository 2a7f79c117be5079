"""A dead peer (issue 14): a port that accepts TCP and never answers costs the whole run the
--timeout the user gave, whatever the number of checks.

Before: association.echo waited the timeout for an answer to its association request, then
another 0.5 s after nudging the port with the end of an HTTP request (a web server may wait for
it); 4.2-4.5 s in all with --timeout 3. The nudge now comes out of the timeout, and the checks
that depend on the association are skipped at no cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from support.faults import silent_listener

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 3.0


def test_a_peer_that_never_answers_costs_the_timeout(tmp_path):
    report_path = tmp_path / "r.json"
    with silent_listener() as port:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "qrdoctor", "check", f"DEAD@127.0.0.1:{port}", "--timeout", f"{TIMEOUT:g}",
             "--json", str(report_path)],
            capture_output=True, text=True, cwd=ROOT, timeout=60)
        elapsed = time.monotonic() - t0
    report = json.loads(report_path.read_text())
    checks = {c["id"]: c for c in report["checks"]}
    echo = checks["association.echo"]
    others = sum(c["duration_s"] for cid, c in checks.items() if cid != "association.echo")
    print(f"dead peer, --timeout {TIMEOUT:g}: whole process {elapsed:.2f} s; association.echo "
          f"{echo['duration_s']:.2f} s; all other checks {others:.2f} s")
    assert proc.returncode == 1, proc.stderr
    assert [f["code"] for f in echo["findings"]] == ["peer-silent"]
    assert echo["duration_s"] <= TIMEOUT + 0.2
    assert others < 0.3
    skipped = [cid for cid, c in checks.items() if c["status"] == "skipped"]
    assert len(skipped) == len(checks) - 2  # all but network.tcp and association.echo
    assert elapsed < TIMEOUT + 1.5, elapsed
    # What the finding says it waited is what it waited for an answer to the request.
    waited = TIMEOUT - min(0.5, TIMEOUT / 10)
    assert f"within {waited:g} s" in echo["findings"][0]["summary"]
