"""Measure the simulated PACS: start time, memory, and C-FIND throughput (not a test).

    python -m qrdoctor.simulator.measure --studies 20000

Prints the time to build the archive and start listening, the process's resident memory before
and after, and (when DCMTK's findscu is installed) how long a universal Study Root STUDY-level
C-FIND of every study takes. Run it in a fresh process: the figures are for the whole process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def find_dcmtk_tool(name: str) -> str | None:
    """Path of the DCMTK tool ``name``; pynetdicom installs look-alike scripts on PATH."""
    candidates = [shutil.which(name), f"/usr/bin/{name}", f"/usr/local/bin/{name}"]
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 errors="replace", timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quirks", default="")
    args = parser.parse_args(argv)

    from qrdoctor.simulator import SimulatedPACS  # imports counted in the baseline

    baseline = _rss_mb()
    started = time.perf_counter()
    pacs = SimulatedPACS(studies=args.studies, seed=args.seed, quirks=args.quirks).start()
    start_s = time.perf_counter() - started
    after = _rss_mb()
    print(f"archive: {pacs.archive}")
    print(f"start (generate + listen): {start_s:.2f} s")
    print(f"RSS: {baseline:.0f} MB after imports, {after:.0f} MB listening "
          f"(+{after - baseline:.0f} MB for the archive)")
    tool = find_dcmtk_tool("findscu")
    if tool:
        started = time.perf_counter()
        proc = subprocess.run(
            [tool, "-v", "-S", "-aet", "QRDOCTOR", "-aec", pacs.ae_title,
             "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientName",
             "-k", "StudyDate", pacs.host, str(pacs.port)],
            capture_output=True, text=True, errors="replace",
        )
        elapsed = time.perf_counter() - started
        count = len(re.findall(r"Find Response: \d+ \(Pending\)", proc.stderr))
        print(f"findscu universal STUDY query: {count} matches in {elapsed:.2f} s "
              f"(RSS now {_rss_mb():.0f} MB)")
    else:
        print("findscu (DCMTK) not found: C-FIND throughput not measured")
    pacs.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
