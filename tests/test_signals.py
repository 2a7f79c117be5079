"""SIGINT and SIGTERM during a run: a report marked interrupted, no temporary files, exit 130 or
143 (issue 11, items 3 and 4).

Each test runs qrdoctor as a separate process against a slow peer, waits until the run is
visibly under way, sends the signal and then reads what the process left behind.
"""

from __future__ import annotations

import glob
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.faults import silent_listener

pytestmark = pytest.mark.timeout(90)


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qrdoctor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 30) -> str:
    """Read stdout until a line holding ``needle`` (the run has reached that point). Reads the
    pipe itself, unbuffered: a buffered reader could hold the line while select() waits."""
    deadline = time.monotonic() + timeout
    seen = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            seen += chunk
            if needle.encode() in seen:
                return seen.decode()
            if not chunk:
                break
    raise AssertionError(f"never saw {needle!r}; output so far:\n{seen.decode(errors='replace')}")


def finish(proc: subprocess.Popen, timeout: float = 10) -> tuple[int, float, str]:
    """Wait for the process; its exit status, how long that took, and its stderr and stdout."""
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, time.monotonic() - t0, f"{err.decode()}\n--- stdout ---\n{out.decode()}"


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_during_a_slow_association_writes_the_reports_marked_interrupted(tmp_path, sig, code, name):
    # Given a run held up by a peer that accepts the connection and never answers
    json_path, md_path, bundle = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.zip"
    with silent_listener() as port:
        proc = start(["check", f"SILENT@127.0.0.1:{port}", "--timeout", "20", "--json", str(json_path),
                      "--md", str(md_path), "--bundle", str(bundle), "--store-port", "0"])
        try:
            wait_for_line(proc, "network.tls")  # association.echo now waits for an answer
            time.sleep(0.3)
            # When the user interrupts it
            proc.send_signal(sig)
            rc, took, err = finish(proc)
        finally:
            proc.kill()
    # Then it ends promptly with the signal's exit status
    assert rc == code, err
    assert took < 5, took
    assert f"interrupted by {name}" in err and "Traceback" not in err
    # And every requested report was written, marked interrupted
    report = json.loads(json_path.read_text())
    assert report["interrupted"] is True
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["network.tcp"]["status"] == "pass"  # finished before the signal: kept
    assert checks["association.echo"]["status"] == "skipped"
    assert checks["association.echo"]["reason"] == f"interrupted by {name} while it ran"
    later = [c for c in report["checks"] if c["id"].startswith(("find.", "match.", "retrieve."))]
    assert later and all(c["status"] == "skipped" and name in c["reason"] for c in later)
    assert "Interrupted." in md_path.read_text() and bundle.stat().st_size > 1000


def test_a_signal_during_a_retrieve_leaves_no_temporary_files(tmp_path):
    # Given a C-MOVE that never ends (the simulated PACS sends Pending forever) and its
    # temporary Store SCP directory under our own TMPDIR
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    json_path = tmp_path / "r.json"
    proc = start(["demo", "--headless", "--quirks", "pending-forever", "--only", "retrieve.move",
                  "--timeout", "5", "--stall-s", "60", "--json", str(json_path)], env={"TMPDIR": str(tmp)})
    try:
        wait_for_line(proc, "find.levels")
        deadline = time.monotonic() + 30
        while not glob.glob(str(tmp / "qrdoctor-retrieve-*")):
            assert time.monotonic() < deadline and proc.poll() is None, "the retrieve never started"
            time.sleep(0.05)
        time.sleep(0.5)  # objects may be on their way
        # When the process is told to terminate
        proc.send_signal(signal.SIGTERM)
        rc, took, err = finish(proc)
    finally:
        proc.kill()
    # Then it exits 143 with the report written, and the temporary directory is gone
    assert rc == 143, err
    assert took < 6, took
    assert glob.glob(str(tmp / "qrdoctor-retrieve-*")) == []
    report = json.loads(json_path.read_text())
    move = next(c for c in report["checks"] if c["id"] == "retrieve.move")
    assert report["interrupted"] is True
    assert move["status"] == "skipped" and "SIGTERM" in move["reason"]
    assert [p.name for p in Path(tmp).iterdir()] == []
