"""Benchmark: receiving a C-MOVE — qrdoctor's Store SCP next to DCMTK's storescp.

Starts a local Orthanc (Debian's package) on loopback, loads one large series (N instances of
ROWS x COLUMNS 16-bit pixels, about 128 KB each at 256 x 256), and moves that series several
times to each receiver, alternating them:

* qrdoctor: :class:`qrdoctor.dicom.storescp.StoreSCP` in a child process of its own, writing every
  object to a temporary directory as the retrieve check does;
* DCMTK ``storescp`` (``-od`` a temporary directory, ``+xa`` every transfer syntax,
  ``TCP_NODELAY=1`` in its environment).

The same C-MOVE (pynetdicom, Study Root, SERIES level) is sent by this script each time. For each
receiver it prints the median over the runs of the objects per second and MB per second (from
the C-MOVE request to its final response, so the PACS's own work is included alike), and the
peak resident memory of the receiving process (VmHWM). Run from the repository root:

    python benchmarks/store_throughput.py [--instances 1000] [--size 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pydicom import Dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # noqa: E402

from support.corpus import dataset_bytes, make_instance  # noqa: E402
from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.tools import peer_env  # noqa: E402

RECEIVER = """
import json, sys
from qrdoctor.dicom.storescp import StoreSCP
scp = StoreSCP("QRDOCTOR", "127.0.0.1", int(sys.argv[1])).start()
print("ready", flush=True)
sys.stdin.readline()
stats = scp.receiver.stats()
print(json.dumps({"objects": stats["objects"], "bytes": stats["bytes"]}), flush=True)
sys.stdin.readline()
scp.stop()
"""


def make_series(n: int, size: int) -> tuple[str, str, list[bytes]]:
    study, series = generate_uid(), generate_uid()
    pixels = os.urandom(size * size * 2)
    out = []
    for i in range(n):
        ds = make_instance(study_instance_uid=study, series_instance_uid=series,
                                 instance_number=i + 1, patient_id="BENCH1", patient_name="BENCH^MARK")
        ds.Rows = ds.Columns = size
        ds.PixelData = pixels
        out.append(dataset_bytes(ds))
    return study, series, out


def move(port: int, study: str, series: str) -> tuple[float, int, int]:
    """One C-MOVE of the series to QRDOCTOR; (seconds, final status, completed)."""
    ae = AE(ae_title="QRDOCTOR")
    ae.add_requested_context(MOVE)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 600
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANC")
    assert assoc.is_established, "Orthanc refused the association"
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    t0 = time.perf_counter()
    final = None
    for status, _ in assoc.send_c_move(ds, "QRDOCTOR", MOVE):
        if "Status" in status and status.Status not in (0xFF00, 0xFF01):
            final = status
    elapsed = time.perf_counter() - t0
    assoc.release()
    ae.shutdown()
    assert final is not None, "no final C-MOVE response"
    return elapsed, int(final.Status), int(final.get("NumberOfCompletedSuboperations") or 0)


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_port(port: int, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def run_qrdoctor(orthanc_port: int, store_port: int, study: str, series: str) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(store_port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "ready"
        elapsed, status, completed = move(orthanc_port, study, series)
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        stats = json.loads(proc.stdout.readline())
        peak = peak_mb(proc.pid)
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return {"seconds": elapsed, "status": status, "completed": completed, "received": stats["objects"],
            "bytes": stats["bytes"], "peak_mb": peak}


def run_storescp(orthanc_port: int, store_port: int, study: str, series: str) -> dict:
    out = tempfile.mkdtemp(prefix="qrdoctor-bench-storescp-")
    proc = subprocess.Popen(["/usr/bin/storescp", "-aet", "QRDOCTOR", "-od", out, "+xa", str(store_port)],
                            env=peer_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(store_port)
        elapsed, status, completed = move(orthanc_port, study, series)
        peak = peak_mb(proc.pid)
        files = list(Path(out).iterdir())
        size = sum(f.stat().st_size for f in files)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": elapsed, "status": status, "completed": completed, "received": len(files),
            "bytes": size, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256, help="rows = columns of each image")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    store_port = free_port()
    config = {**ORTHANC_ALLOW_ALL,
              "DicomModalities": {"QRDOCTOR": ["QRDOCTOR", "127.0.0.1", store_port]}}
    study, series, blobs = make_series(args.instances, args.size)
    print(f"series: {len(blobs)} instances of {len(blobs[0]) / 1024:.0f} KB "
          f"({sum(map(len, blobs)) / 1e6:.0f} MB)")
    with OrthancServer("ORTHANC", config) as orthanc:
        t0 = time.perf_counter()
        orthanc.upload(blobs)
        print(f"loaded into Orthanc in {time.perf_counter() - t0:.1f} s")
        del blobs
        run_qrdoctor(orthanc.dicom_port, store_port, study, series)  # warm Orthanc's cache
        results: dict[str, list[dict]] = {"qrdoctor": [], "storescp": []}
        for i in range(args.runs):
            order = ["qrdoctor", "storescp"] if i % 2 == 0 else ["storescp", "qrdoctor"]
            for name in order:
                fn = run_qrdoctor if name == "qrdoctor" else run_storescp
                r = fn(orthanc.dicom_port, store_port, study, series)
                assert r["status"] == 0 and r["received"] == args.instances, (name, r)
                results[name].append(r)
                print(f"  run {i + 1} {name:9s} {r['seconds']:6.2f} s  {args.instances / r['seconds']:7.1f} obj/s  "
                      f"{r['bytes'] / r['seconds'] / 1e6:6.1f} MB/s  peak {r['peak_mb']:.0f} MB")

    def med(name: str, key: str) -> float:
        return statistics.median(key_fn(r) for r in results[name]) if (key_fn := {
            "obj": lambda r: args.instances / r["seconds"],
            "mb": lambda r: r["bytes"] / r["seconds"] / 1e6,
            "peak": lambda r: r["peak_mb"]}[key]) else 0.0

    print()
    print(f"{'receiver':10s} {'objects/s':>10s} {'MB/s':>8s} {'peak RSS':>9s}   (median of {args.runs})")
    for name in ("qrdoctor", "storescp"):
        print(f"{name:10s} {med(name, 'obj'):10.1f} {med(name, 'mb'):8.1f} {med(name, 'peak'):7.0f} MB")
    print(f"ratio qrdoctor / storescp (objects/s): {med('qrdoctor', 'obj') / med('storescp', 'obj'):.2f}")


if __name__ == "__main__":
    main()
