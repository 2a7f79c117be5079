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
peak resident memory of the receiving process (VmHWM).

With ``--codec jpeg-ls`` or ``--codec jpeg-lossless`` it measures receiving *compressed* objects
instead: N instances of SIZE x SIZE 12-bit images (a smooth phantom with noise, which compresses
about as much as a clinical image does losslessly) compressed by DCMTK ``dcmcjpls`` /
``dcmcjpeg`` (``support.compressed.compress_corpus``), sent by DCMTK ``storescu`` proposing that
syntax (``-xt`` / ``-xs``, required contexts only) to each receiver in turn: qrdoctor's Store SCP
with its default receiver profile (``all``: the sender's own first choice per context) and
``storescp +xa``. The time is ``storescu``'s, start to exit, the same for both; each run checks
that every object arrived and that it arrived in the compressed syntax, and records the CPU the
receiving process used meanwhile (steadier than wall time on a loaded machine). Run from the repository
root:

    python benchmarks/store_throughput.py [--instances 1000] [--size 256] [--runs 5]
    python benchmarks/store_throughput.py --codec jpeg-ls [--instances 1000] [--size 512] [--runs 5]

``--python PATH`` runs another checkout's qrdoctor receiver (e.g. a clean clone for a "before"
figure); ``--json FILE`` saves every run and the medians.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import wholeprocess as wp
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

from support.compressed import CODECS, compress_corpus
from support.corpus import dataset_bytes, make_instance
from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer
from support.ports import free_port
from support.tools import peer_env

RECEIVER = """
import json, sys
from qrdoctor.dicom.storescp import StoreSCP
directory = sys.argv[2] if len(sys.argv) > 2 else None
scp = StoreSCP("QRDOCTOR", "127.0.0.1", int(sys.argv[1]), directory=directory,
               keep=directory is not None).start()
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


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


class QrdoctorReceiver:
    """qrdoctor's Store SCP in a child process run by ``python`` outside the repository (so a
    ``--python`` of another checkout receives with that checkout's code)."""

    def __init__(self, python: str, port: int, directory: Path | None = None) -> None:
        cmd = [python, "-c", RECEIVER, str(port)] + ([str(directory)] if directory else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=wp.SCRATCH)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("qrdoctor's Store SCP did not start")

    def finish(self) -> tuple[dict, float]:
        """(objects and bytes received, peak RSS in MB); stops the receiver."""
        try:
            self.proc.stdin.write("stats\n")
            self.proc.stdin.flush()
            stats = json.loads(self.proc.stdout.readline())
            peak = peak_mb(self.proc.pid)
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return stats, peak


def run_qrdoctor(orthanc_port: int, store_port: int, study: str, series: str,
                 python: str = sys.executable) -> dict:
    receiver = QrdoctorReceiver(python, store_port)
    try:
        elapsed, status, completed = move(orthanc_port, study, series)
    finally:
        stats, peak = receiver.finish()
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


def main_move(args: argparse.Namespace) -> dict:
    """The C-MOVE from Orthanc (uncompressed objects), qrdoctor's receiver next to storescp."""
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
                if name == "qrdoctor":
                    r = run_qrdoctor(orthanc.dicom_port, store_port, study, series, args.python)
                else:
                    r = run_storescp(orthanc.dicom_port, store_port, study, series)
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
    return {"mode": "c-move from Orthanc, uncompressed", "runs": results,
            "medians": {name: {"objects_per_s": med(name, "obj"), "mb_per_s": med(name, "mb"),
                               "peak_mb": med(name, "peak")} for name in results},
            "ratio": med("qrdoctor", "obj") / med("storescp", "obj")}


# -- compressed objects sent by DCMTK storescu ----------------------------------------------------

PROPOSE = {"jpeg-ls": "-xt", "jpeg-lossless": "-xs"}  # storescu: propose that syntax


def phantom(size: int, seed: int) -> bytes:
    """A SIZE x SIZE 12-bit image: a smooth disc on a background, with a few bits of noise."""
    rng = random.Random(seed)
    half, r2 = size / 2, (size * 0.45) ** 2
    out = array.array("H")
    for r in range(size):
        dy = (r - half) ** 2
        for c in range(size):
            d = dy + (c - half) ** 2
            base = 1024 + int(800 * (1 - d / r2)) if d < r2 else 24
            out.append(min(4095, base + rng.getrandbits(5)))
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def make_compressed(n: int, size: int, codec: str, directory: Path, variants: int = 8) -> list[Path]:
    """``n`` compressed Part 10 files of one series: ``variants`` distinct images compressed by
    DCMTK, each copied with new SOP Instance UIDs (the compressed pixel data is not touched)."""
    study, series = generate_uid(), generate_uid()
    sources = []
    for v in range(variants):
        ds = make_instance(study_instance_uid=study, series_instance_uid=series, instance_number=v + 1,
                           patient_id="BENCH1", patient_name="BENCH^MARK")
        ds.Rows = ds.Columns = size
        ds.PixelData = phantom(size, v)
        sources.append(ds)
    compressed = compress_corpus(sources, directory / "src", codec)
    out_dir = directory / "send"
    out_dir.mkdir()
    files = []
    for i in range(n):
        ds = pydicom.dcmread(compressed[i % variants])
        uid = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        path = out_dir / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def send(files: list[Path], port: int, codec: str) -> wp.Timed:
    t = wp.run_timed([wp.dcmtk("storescu"), "-aet", "BENCH", "-aec", "QRDOCTOR", PROPOSE[codec], "-R",
                      "127.0.0.1", str(port), *map(str, files)], env=peer_env(), timeout=600)
    if t.returncode != 0:
        raise RuntimeError(f"storescu failed ({t.returncode}): {t.stderr[-2000:]}")
    return t


def received_syntaxes(directory: Path) -> set[str]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            for f in sorted(directory.iterdir())[:5]}


def receive_qrdoctor(files: list[Path], port: int, codec: str, python: str, tmp: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="qrdoctor-", dir=tmp))
    receiver = QrdoctorReceiver(python, port, out / "in")
    try:
        cpu0 = cpu_s(receiver.proc.pid)
        t = send(files, port, codec)
        cpu = cpu_s(receiver.proc.pid) - cpu0
    finally:
        stats, peak = receiver.finish()
    syntaxes = received_syntaxes(out / "in")
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": t.seconds, "received": stats["objects"], "bytes": stats["bytes"],
            "peak_mb": peak, "syntaxes": sorted(syntaxes), "receiver_cpu_s": cpu,
            "sender_cpu_s": t.user_s + t.sys_s}


def receive_storescp(files: list[Path], port: int, codec: str, tmp: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="storescp-", dir=tmp))
    proc = subprocess.Popen([wp.dcmtk("storescp"), "-aet", "QRDOCTOR", "-od", str(out), "+xa", str(port)],
                            env=peer_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        cpu0 = cpu_s(proc.pid)
        t = send(files, port, codec)
        cpu = cpu_s(proc.pid) - cpu0
        peak = peak_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    received = list(out.iterdir())
    size = sum(f.stat().st_size for f in received)
    syntaxes = received_syntaxes(out)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": t.seconds, "received": len(received), "bytes": size, "peak_mb": peak,
            "syntaxes": sorted(syntaxes), "receiver_cpu_s": cpu, "sender_cpu_s": t.user_s + t.sys_s}


def main_compressed(args: argparse.Namespace) -> dict:
    """Compressed objects sent by storescu: qrdoctor's receiver next to ``storescp +xa``."""
    tmp = Path(tempfile.mkdtemp(prefix="qrdoctor-bench-compressed-"))
    try:
        t0 = time.perf_counter()
        files = make_compressed(args.instances, args.size, args.codec, tmp)
        total = sum(f.stat().st_size for f in files)
        syntax = CODECS[args.codec][1]
        raw = args.size * args.size * 2
        print(f"{len(files)} objects, {args.size}x{args.size} 12-bit, {syntax.name} ({syntax}): "
              f"{total / len(files) / 1024:.0f} KB each on average (pixel data {raw / 1024:.0f} KB "
              f"uncompressed), {total / 1e6:.0f} MB; made in {time.perf_counter() - t0:.0f} s")
        port = free_port()
        results: dict[str, list[dict]] = {"qrdoctor": [], "storescp": []}

        def one(name: str) -> dict:
            if name == "qrdoctor":
                return receive_qrdoctor(files, port, args.codec, args.python, tmp)
            return receive_storescp(files, port, args.codec, tmp)

        one("qrdoctor"), one("storescp")  # warm-up: the page cache holds the files afterwards
        for i in range(args.runs):
            for name in (["qrdoctor", "storescp"] if i % 2 == 0 else ["storescp", "qrdoctor"]):
                r = one(name)
                if r["received"] != len(files) or r["syntaxes"] != [str(syntax)]:
                    raise RuntimeError(f"{name}: received {r['received']} of {len(files)}, "
                                       f"in {r['syntaxes']} (expected {syntax})")
                r["objects_per_s"] = len(files) / r["seconds"]
                r["mb_per_s"] = r["bytes"] / r["seconds"] / 1e6
                results[name].append(r)
                print(f"  run {i + 1} {name:9s} {r['seconds']:6.2f} s  {r['objects_per_s']:7.1f} obj/s  "
                      f"{r['mb_per_s']:6.1f} MB/s  receiver CPU {r['receiver_cpu_s']:5.2f} s  "
                      f"peak {r['peak_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: {key: statistics.median(r[key] for r in rs)
                      for key in ("objects_per_s", "mb_per_s", "peak_mb", "seconds",
                                  "receiver_cpu_s")}
               for name, rs in results.items()}
    ratio = medians["qrdoctor"]["objects_per_s"] / medians["storescp"]["objects_per_s"]
    # each round runs both back to back: the median of the rounds' ratios resists a machine
    # whose load changes during the benchmark
    paired = statistics.median(q["objects_per_s"] / d["objects_per_s"]
                               for q, d in zip(results["qrdoctor"], results["storescp"], strict=True))
    print()
    print(f"{'receiver':16s} {'objects/s':>10s} {'MB/s':>8s} {'CPU s':>6s} {'peak RSS':>9s}   (median of {args.runs}; "
          f"sent by storescu {PROPOSE[args.codec]} -R, TCP_NODELAY=1)")
    for name, label in (("qrdoctor", "qrdoctor"), ("storescp", "storescp +xa")):
        m = medians[name]
        print(f"{label:16s} {m['objects_per_s']:10.1f} {m['mb_per_s']:8.1f} {m['receiver_cpu_s']:6.2f} "
              f"{m['peak_mb']:7.0f} MB")
    print(f"ratio qrdoctor / storescp (objects/s): {ratio:.2f} of the medians, {paired:.2f} the "
          f"median of each round's ratio")
    return {"mode": f"storescu {PROPOSE[args.codec]} -R, compressed", "codec": args.codec,
            "transfer_syntax": str(syntax), "objects": len(files), "size": args.size,
            "bytes_sent": total, "runs": results, "medians": medians, "ratio": ratio,
            "paired_ratio": paired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=None,
                        help="objects per run (default 1000)")
    parser.add_argument("--size", type=int, default=None,
                        help="rows = columns of each image (default 256; 512 with --codec)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--codec", choices=sorted(PROPOSE),
                        help="send compressed objects with DCMTK storescu instead of a C-MOVE")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter whose qrdoctor receives (default: this one)")
    parser.add_argument("--json", type=Path, help="save every run and the medians here")
    args = parser.parse_args()
    args.instances = args.instances or 1000
    args.size = args.size or (512 if args.codec else 256)
    result = {"machine": wp.machine(), "tools": wp.tool_versions(),
              "qrdoctor": wp.qrdoctor_source(args.python)}
    result.update(main_compressed(args) if args.codec else main_move(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
