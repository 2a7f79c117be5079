"""`qrdoctor demo` and `qrdoctor simulate` from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from support.ports import free_port


def test_demo_headless_prints_an_explained_diagnosis(tmp_path):
    # Given a fresh process, when the demo runs headless
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "qrdoctor", "demo", "--headless", "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    report = json.loads((tmp_path / "r.json").read_text())
    # Then it finishes in seconds, shows problems with their fixes, and exits with the documented code
    assert elapsed < 30, elapsed
    statuses = {c["status"] for c in report["checks"]}
    assert proc.returncode == (1 if "fail" in statuses else 0)
    assert "match-limit" in proc.stdout and "Fix (PACS administrator):" in proc.stdout
    limit = next(c for c in report["checks"] if c["id"] == "find.match_limit")
    assert limit["facts"]["limit"] == 137


def test_list_quirks():
    proc = subprocess.run([sys.executable, "-m", "qrdoctor", "demo", "--list-quirks"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "silent-cap=N" in proc.stdout and "wrong-port" in proc.stdout


def test_bad_quirk_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "qrdoctor", "simulate", "--quirks", "no-such-quirk"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no-such-quirk" in proc.stderr and "Traceback" not in proc.stderr


def test_simulate_runs_in_the_foreground_until_interrupted():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qrdoctor", "simulate", "--port", str(port), "--studies", "5",
                             "--quirks", "case-sensitive-pn"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in line
        check = subprocess.run([sys.executable, "-m", "qrdoctor", "check", f"SIMPACS@127.0.0.1:{port}",
                                "--only", "match.wildcards", "--json", "-"], capture_output=True, text=True, timeout=60)
        report = json.loads(check.stdout)
        wild = next(c for c in report["checks"] if c["id"] == "match.wildcards")
        assert wild["facts"]["case_sensitive"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert not os.path.exists(f"/proc/{proc.pid}")
