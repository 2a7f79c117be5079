"""Shared by the benchmarks: timing whole processes, and which qrdoctor a given Python runs.

* :func:`run_timed` runs a command under GNU ``time``, so each measurement has the wall time
  from launch to exit *and* that process's own user/system CPU and peak resident memory.
* Children run in a scratch directory, never the repository: ``python -m`` and ``python -c`` put
  the working directory first on ``sys.path``, and a benchmark given ``--python`` of another
  checkout must run *that* checkout's qrdoctor.
* DCMTK tools run with ``TCP_NODELAY=1`` (``support.tools.peer_env``), as in the test suite, or
  as shipped (``nodelay=False``): DCMTK 3.6.7 leaves Nagle's algorithm on unless that variable
  is set, and then meets the peer's delayed ACKs.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.tools import DCMTK_BIN_DIR, peer_env  # noqa: E402

SCRATCH = Path(tempfile.mkdtemp(prefix="qrdoctor-bench-cwd-"))
atexit.register(shutil.rmtree, SCRATCH, True)


@dataclass
class Timed:
    """One finished process: wall seconds, its own CPU seconds and peak RSS in MB."""

    seconds: float
    user_s: float
    sys_s: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str

    def brief(self) -> dict:
        out = asdict(self)
        del out["stdout"], out["stderr"]
        return out


TIME_BIN = "/usr/bin/time"


def run_timed(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0,
              started: list[float] | None = None) -> Timed:
    """Run ``cmd`` to its end in :data:`SCRATCH` under GNU ``time``; ``started`` (if given)
    gets the ``perf_counter`` at which it was launched.

    Wall time is measured here; CPU and peak RSS come from ``time``, which forks the command
    from its own small process: ``ru_maxrss`` of a child forked from this (large) Python
    process would include this process's resident memory at the fork.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".time") as usage:
        t0 = time.perf_counter()
        if started is not None:
            started.append(t0)
        proc = subprocess.Popen([TIME_BIN, "-q", "-f", "%U %S %M", "-o", usage.name, *cmd],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=SCRATCH, env=env, start_new_session=True)
        # A blocking wait: Popen.wait(timeout) polls with sleeps of up to 50 ms, which would
        # round every figure up by as much.
        killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            proc.wait()
        finally:
            killer.cancel()
        elapsed = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        fields = (usage.read().strip().splitlines() or ["nan nan 0"])[-1].split()
        user_s, sys_s, max_kb = float(fields[0]), float(fields[1]), int(fields[2])
        return Timed(elapsed, user_s, sys_s, max_kb / 1024, proc.returncode,
                     out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def dcmtk(tool: str) -> str:
    """DCMTK's binary by absolute path (pynetdicom installs console scripts of the same names)."""
    return f"{DCMTK_BIN_DIR}/{tool}"


def dcmtk_env(nodelay: bool = True) -> dict[str, str]:
    """The environment of a DCMTK tool: with ``TCP_NODELAY=1`` (as the test suite runs them),
    or as shipped (no such variable: Nagle's algorithm on)."""
    env = peer_env()
    if not nodelay:
        env.pop("TCP_NODELAY", None)
    return env


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def qrdoctor_source(python: str) -> dict:
    """Which qrdoctor (and library versions) ``python`` runs from the scratch directory."""
    code = ("import json, qrdoctor, pynetdicom, pydicom; print(json.dumps({'python': __import__('sys')"
            ".version.split()[0], 'qrdoctor': qrdoctor.__file__, 'qrdoctor_version': "
            "getattr(qrdoctor, '__version__', '?'), 'pynetdicom': pynetdicom.__version__, "
            "'pydicom': pydicom.__version__}))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=SCRATCH,
                          check=True)
    info = json.loads(proc.stdout)
    info["interpreter"] = python
    checkout = Path(info["qrdoctor"]).parent.parent
    git = subprocess.run(["git", "-C", str(checkout), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    info["commit"] = git.stdout.strip() if git.returncode == 0 else None
    return info


def tool_versions() -> dict:
    """Orthanc's and DCMTK's versions as the binaries report them."""
    out = {}
    for name, cmd in (("orthanc", ["/usr/sbin/Orthanc", "--version"]),
                      ("dcmtk", [dcmtk("findscu"), "--version"])):
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            continue
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        out[name] = first
    return out


def machine() -> dict:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "load_average_at_start": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# -- C-FIND counting as a whole process --------------------------------------------------------

# The child counts the matches of an IMAGE-level Study Root C-FIND with qrdoctor's C-FIND client.
COUNT_CHILD = """
import sys
from pydicom import Dataset
from qrdoctor.dicom.find import FindAssociation
M = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
ds = Dataset(); ds.QueryRetrieveLevel = "IMAGE"; ds.SOPInstanceUID = ""
with FindAssociation("127.0.0.1", int(sys.argv[1]), "QRDOCTOR", sys.argv[2], [M], 30) as fa:
    print(fa.find(M, ds).matches)
"""


def count_qrdoctor(python: str, port: int, aet: str) -> tuple[int, Timed]:
    """(matches, timing) of the qrdoctor counter run as a whole process by ``python``."""
    t = run_timed([python, "-c", COUNT_CHILD, str(port), aet])
    if t.returncode != 0:
        raise RuntimeError(f"qrdoctor counter failed ({t.returncode}): {t.stderr[-2000:]}")
    return int(t.stdout.strip()), t


def count_findscu(port: int, aet: str, nodelay: bool = True) -> tuple[int, Timed]:
    """(matches, timing) of DCMTK ``findscu`` for the same query; ``-v`` logs one
    ``(Pending)`` line per match."""
    t = run_timed([dcmtk("findscu"), "-S", "-aet", "QRDOCTOR", "-aec", aet,
                   "-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID", "-v",
                   "127.0.0.1", str(port)], env=dcmtk_env(nodelay))
    return (t.stdout + t.stderr).count("(Pending)"), t
