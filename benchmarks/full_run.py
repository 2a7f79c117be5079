"""Benchmark: qrdoctor's whole-process runs next to DCMTK, against one local Orthanc and dcmqrscp.

Starts, on loopback, a private Orthanc 1.10 (Debian's package) loaded with a realistic corpus
(``support.corpus.make_corpus``: by default 768 studies x 2 series x 2 instances = 3,072
instances) and a private DCMTK ``dcmqrscp`` holding its first studies, then measures, in one
run, every figure as a whole process (interpreter start and imports included), median of
``--runs``, qrdoctor and its DCMTK reference alternating:

* the full default diagnosis, ``qrdoctor check AE@127.0.0.1:PORT --listen-host 127.0.0.1``,
  next to the minimal DCMTK sequence a person would type: ``echoscu``; ``findscu`` at PATIENT
  (Patient Root), STUDY, SERIES and IMAGE level (Study Root) for one patient's study; a
  ``storescp +xa`` started for the retrieve and ``movescu`` of one series into it;
* start-up: ``qrdoctor --version`` (and ``python -c pass`` for the interpreter alone);
* the monitoring echo, ``qrdoctor check ... --only association.echo``, next to ``echoscu``;
* C-FIND counting: an IMAGE-level Study Root C-FIND matching every instance in Orthanc, counted
  by qrdoctor's C-FIND client in a process of its own, next to DCMTK ``findscu``;
* peak memory: each process's own peak resident set (``ru_maxrss`` from ``wait4``);
* a dead peer: a socket on loopback that accepts and never answers, full default run with
  ``--timeout 3``; also when qrdoctor's first TCP connection arrived after the process started.

qrdoctor's processes run with compiled bytecode, as an installed qrdoctor does (pip compiles the
modules it installs): a ``PYTHONDONTWRITEBYTECODE`` in the environment would otherwise make every
process of a source checkout compile qrdoctor's modules anew (0.05-0.1 s a process here). The
bytecode is cached in the run's temporary folder (``PYTHONPYCACHEPREFIX``) and written by the
warm-up runs; ``--bytecode source`` measures the other way.

Every DCMTK reference is measured twice: as shipped (DCMTK 3.6.7 leaves Nagle's algorithm on, and
its PDU writes then meet the peer's delayed ACKs) and with ``TCP_NODELAY=1`` in its environment
(as the test suite runs it). Orthanc and dcmqrscp run with ``TCP_NODELAY=1``, as in the tests,
or as shipped with ``--peers-as-shipped`` (then every DCMTK-based server answer can wait for a
delayed ACK, ~40 ms, whoever the client is). ``--python`` runs another checkout's qrdoctor (e.g. a clean clone for a
"before" figure); children run outside the repository so they import that interpreter's
qrdoctor. Run from the repository root:

    python benchmarks/full_run.py [--python PATH] [--runs 5] [--studies 768] [--peers-as-shipped]
                                  [--json FILE] [--text FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import wholeprocess as wp

from support.corpus import make_corpus
from support.dcmqrscp import DcmqrscpServer
from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer
from support.ports import LOOPBACK, free_ports

QR_AE, STORESCP_AE = "QRDOCTOR", "STORESCP"


class DeadPeer:
    """A TCP listener on loopback that accepts every connection and never sends a byte (it
    reads and discards what arrives). ``first_accept`` is the ``perf_counter`` of the first
    connection since :meth:`reset`."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.first_accept: float | None = None
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.first_accept is None:
                self.first_accept = time.perf_counter()
            self.conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def reset(self) -> None:
        self.first_accept = None
        for conn in self.conns:
            conn.close()
        self.conns.clear()

    def close(self) -> None:
        self._stop = True
        self.reset()
        self.sock.close()


class ShippedOrthanc(OrthancServer):
    """Orthanc started without ``TCP_NODELAY=1`` (``--peers-as-shipped``): DCMTK, which Orthanc
    links, then leaves Nagle's algorithm on, as on a PACS nobody tuned."""

    def launch(self, cmd: list[str]) -> None:
        launch_as_shipped(self, cmd)


class ShippedDcmqrscp(DcmqrscpServer):
    """dcmqrscp started without ``TCP_NODELAY=1`` (``--peers-as-shipped``)."""

    def launch(self, cmd: list[str]) -> None:
        launch_as_shipped(self, cmd)


def launch_as_shipped(server: OrthancServer | DcmqrscpServer, cmd: list[str]) -> None:
    # as support.process.ServerProcess.launch, with the environment of a DCMTK as shipped
    with open(server.log_path, "wb") as log:
        server.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=server.tmpdir,
                                       env=wp.dcmtk_env(nodelay=False), start_new_session=True)
    server.pid = server.proc.pid


def listening(port: int, proc: subprocess.Popen, within: float = 10.0) -> bool:
    """True once ``proc`` accepts connections on ``port`` (polled every 2 ms, so the DCMTK
    sequence is not charged for a coarse poll)."""
    end = time.monotonic() + within
    while time.monotonic() < end and proc.poll() is None:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.002)
    return False


class Bench:
    def __init__(self, python: str, qr_port: int, dcmtk_port: int, tmp: Path) -> None:
        self.python, self.qr_port, self.dcmtk_port, self.tmp = python, qr_port, dcmtk_port, tmp
        self.n = 0

    # -- qrdoctor -------------------------------------------------------------------------------

    def qrdoctor_check(self, target: str, *extra: str, receiver: bool = True) -> tuple[wp.Timed, dict]:
        """``qrdoctor check TARGET ... --json FILE``; with ``receiver``, the temporary Store SCP
        listens on loopback only, on the port Orthanc and dcmqrscp know (a run without a
        retrieve check -- the monitoring echo -- is measured as a monitoring job types it)."""
        self.n += 1
        report = self.tmp / f"report-{self.n}.json"
        where = ["--listen-host", LOOPBACK, "--store-port", str(self.qr_port)] if receiver else []
        t = wp.run_timed([self.python, "-m", "qrdoctor", "check", target, *where,
                          "--json", str(report), *extra])
        if t.returncode not in (0, 1) or not report.exists():
            raise RuntimeError(f"qrdoctor check {target} {' '.join(extra)} ended with "
                               f"{t.returncode}: {t.stderr[-3000:]}")
        return t, json.loads(report.read_text())

    # -- DCMTK ----------------------------------------------------------------------------------

    def dcmtk_sequence(self, port: int, aet: str, keys: dict[str, str], nodelay: bool) -> dict:
        """echoscu; findscu at four levels; storescp +xa started; movescu of one series into it.
        Wall time from the first command's start to movescu's end."""
        env = wp.dcmtk_env(nodelay)
        base = ["-aet", QR_AE, "-aec", aet]
        addr = [LOOPBACK, str(port)]
        steps: list[tuple[str, wp.Timed]] = []
        out = Path(tempfile.mkdtemp(prefix="storescp-", dir=self.tmp))
        t0 = time.perf_counter()
        steps.append(("echoscu", wp.run_timed([wp.dcmtk("echoscu"), *base, *addr], env=env)))
        for level, model, k in (
            ("PATIENT", "-P", [f"PatientID={keys['patient']}", "PatientName"]),
            ("STUDY", "-S", [f"PatientID={keys['patient']}", "StudyInstanceUID", "StudyDate"]),
            ("SERIES", "-S", [f"StudyInstanceUID={keys['study']}", "SeriesInstanceUID", "Modality"]),
            ("IMAGE", "-S", [f"StudyInstanceUID={keys['study']}",
                             f"SeriesInstanceUID={keys['series']}", "SOPInstanceUID"]),
        ):
            cmd = [wp.dcmtk("findscu"), model, *base, "-k", f"QueryRetrieveLevel={level}"]
            for key in k:
                cmd += ["-k", key]
            steps.append((f"findscu {level}", wp.run_timed([*cmd, *addr], env=env)))
        scp_start = time.perf_counter()
        scp = subprocess.Popen([wp.dcmtk("storescp"), "-aet", STORESCP_AE, "-od", str(out), "+xa",
                                str(self.dcmtk_port)], env=env, cwd=wp.SCRATCH,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not listening(self.dcmtk_port, scp):
                raise RuntimeError("DCMTK storescp did not start listening")
            scp_ready = time.perf_counter() - scp_start
            steps.append(("movescu SERIES", wp.run_timed(
                [wp.dcmtk("movescu"), "-S", *base, "-aem", STORESCP_AE,
                 "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={keys['study']}",
                 "-k", f"SeriesInstanceUID={keys['series']}", *addr], env=env)))
            elapsed = time.perf_counter() - t0
        finally:
            scp.terminate()
            scp.wait(10)
        received = len(list(out.iterdir()))
        shutil.rmtree(out, ignore_errors=True)
        failed = [name for name, t in steps if t.returncode != 0]
        if failed or received != keys["series_instances"]:
            raise RuntimeError(f"DCMTK sequence against {aet}: failed steps {failed}, storescp "
                               f"received {received} of {keys['series_instances']}")
        return {"seconds": elapsed, "storescp_ready_s": scp_ready,
                "user_s": sum(t.user_s for _, t in steps), "sys_s": sum(t.sys_s for _, t in steps),
                "peak_mb": max(t.peak_mb for _, t in steps),
                "steps": {name: round(t.seconds, 4) for name, t in steps}}


def series_keys(corpus: list) -> dict[str, str]:
    first = corpus[0]
    series = [ds for ds in corpus if ds.SeriesInstanceUID == first.SeriesInstanceUID]
    return {"patient": str(first.PatientID), "study": str(first.StudyInstanceUID),
            "series": str(first.SeriesInstanceUID), "series_instances": len(series)}


def interleaved(runs: int, *fns: Callable[[], dict]) -> list[list[dict]]:
    """One warm-up of each, then ``runs`` rounds of all, rotating which goes first."""
    for fn in fns:
        fn()
    out: list[list[dict]] = [[] for _ in fns]
    for i in range(runs):
        for k in range(len(fns)):
            j = (i + k) % len(fns)
            out[j].append(fns[j]())
    return out


def compared(q: list[dict], shipped: list[dict], nodelay: list[dict], **extra) -> dict:
    """qrdoctor's samples next to DCMTK's, as shipped and with TCP_NODELAY=1; the ratios are
    qrdoctor's median time over DCMTK's."""
    out = {**extra, "qrdoctor": stats(q), "dcmtk": stats(shipped), "dcmtk_nodelay": stats(nodelay)}
    out["ratio"] = out["qrdoctor"]["median_s"] / out["dcmtk"]["median_s"]
    out["ratio_nodelay"] = out["qrdoctor"]["median_s"] / out["dcmtk_nodelay"]["median_s"]
    return out


def timed_dict(t: wp.Timed, **extra) -> dict:
    return {**t.brief(), **extra}


def check_summary(report: dict) -> dict:
    return {"summary": report.get("summary", {}),
            "checks": {c["id"]: {"status": c["status"], "duration_s": c.get("duration_s", 0.0)}
                       for c in report.get("checks", [])}}


def stats(samples: list[dict]) -> dict:
    return {"median_s": wp.median([s["seconds"] for s in samples]),
            "cpu_s": wp.median([s["user_s"] + s["sys_s"] for s in samples]),
            "peak_mb": max(s["peak_mb"] for s in samples), "samples": samples}


def measure_server(bench: Bench, name: str, target: str, port: int, aet: str, keys: dict,
                   runs: int) -> dict:
    def qr_full() -> dict:
        t, report = bench.qrdoctor_check(target)
        return timed_dict(t, **check_summary(report))

    print(f"  {name}: full default run vs the DCMTK sequence ...", flush=True)
    full_q, full_d, full_n = interleaved(runs, qr_full,
                                         lambda: bench.dcmtk_sequence(port, aet, keys, False),
                                         lambda: bench.dcmtk_sequence(port, aet, keys, True))

    def qr_echo() -> dict:
        t, report = bench.qrdoctor_check(target, "--only", "association.echo", receiver=False)
        return timed_dict(t, **check_summary(report))

    def echoscu(nodelay: bool) -> dict:
        t = wp.run_timed([wp.dcmtk("echoscu"), "-aet", QR_AE, "-aec", aet, LOOPBACK, str(port)],
                         env=wp.dcmtk_env(nodelay))
        if t.returncode != 0:
            raise RuntimeError(f"echoscu failed: {t.stderr[-1000:]}")
        return t.brief()

    print(f"  {name}: monitoring echo vs echoscu ...", flush=True)
    echo = interleaved(runs, qr_echo, lambda: echoscu(False), lambda: echoscu(True))
    out = {"full_run": compared(full_q, full_d, full_n), "echo": compared(*echo)}
    per_check: dict[str, list[float]] = {}
    for s in full_q:
        for cid, c in s["checks"].items():
            per_check.setdefault(cid, []).append(c["duration_s"])
    out["full_run"]["per_check_median_s"] = {cid: wp.median(v) for cid, v in per_check.items()}
    out["full_run"]["statuses"] = {cid: c["status"] for cid, c in full_q[-1]["checks"].items()}
    return out


def measure_count(bench: Bench, orthanc: OrthancServer, expected: int, runs: int) -> dict:
    def qr() -> dict:
        n, t = wp.count_qrdoctor(bench.python, orthanc.dicom_port, orthanc.aet)
        return timed_dict(t, matches=n)

    def findscu(nodelay: bool) -> dict:
        n, t = wp.count_findscu(orthanc.dicom_port, orthanc.aet, nodelay)
        return timed_dict(t, matches=n)

    print("  Orthanc: C-FIND counting vs findscu ...", flush=True)
    q, d, n = interleaved(runs, qr, lambda: findscu(False), lambda: findscu(True))
    for name, samples in (("qrdoctor", q), ("findscu", d), ("findscu TCP_NODELAY=1", n)):
        wrong = {s["matches"] for s in samples} - {expected}
        if wrong:
            raise RuntimeError(f"{name} counted {sorted(wrong)} matches, expected {expected}")
    return compared(q, d, n, matches=expected)


def measure_startup(bench: Bench, runs: int) -> dict:
    def version() -> dict:
        t = wp.run_timed([bench.python, "-m", "qrdoctor", "--version"])
        if t.returncode != 0:
            raise RuntimeError(f"qrdoctor --version failed: {t.stderr[-1000:]}")
        return t.brief()

    def bare() -> dict:
        return wp.run_timed([bench.python, "-c", "pass"]).brief()

    print("  start-up ...", flush=True)
    q, p = interleaved(runs, version, bare)
    return {"qrdoctor": stats(q), "python": stats(p)}


def measure_dead_peer(bench: Bench, runs: int, timeout: float) -> dict:
    peer = DeadPeer()
    samples = []
    print(f"  dead peer, --timeout {timeout:g} ...", flush=True)
    try:
        for _ in range(runs):
            peer.reset()
            started: list[float] = []
            bench.n += 1
            report = bench.tmp / f"dead-{bench.n}.json"
            t = wp.run_timed([bench.python, "-m", "qrdoctor", "check", f"DEAD@{LOOPBACK}:{peer.port}",
                              "--timeout", f"{timeout:g}", "--listen-host", LOOPBACK,
                              "--store-port", str(bench.qr_port), "--json", str(report)],
                             started=started, timeout=120)
            first = (peer.first_accept - started[0]) if peer.first_accept is not None else None
            summary = check_summary(json.loads(report.read_text())) if report.exists() else {}
            samples.append(timed_dict(t, first_connection_s=first, **summary))
    finally:
        peer.close()
    firsts = [s["first_connection_s"] for s in samples if s["first_connection_s"] is not None]
    return {"timeout_s": timeout, **stats(samples), "first_connection_median_s": wp.median(firsts)}


# -- output ----------------------------------------------------------------------------------------


def table(result: dict) -> str:
    m = result["measures"]
    rows: list[tuple[str, ...]] = []

    def sec(x: dict) -> str:
        return f"{x['median_s']:.2f} s"

    def pair(label: str, x: dict, ref: str, target: str) -> None:
        rows.append((label, sec(x["qrdoctor"]), ref, sec(x["dcmtk"]), f"{x['ratio']:.1f}x",
                     sec(x["dcmtk_nodelay"]), f"{x['ratio_nodelay']:.1f}x", target,
                     f"{x['qrdoctor']['peak_mb']:.0f} MB", f"{x['dcmtk']['peak_mb']:.0f} MB"))

    for server in ("orthanc", "dcmqrscp"):
        if server not in m:
            continue
        s = m[server]
        checks = len([c for c in s["full_run"]["statuses"].values() if c != "skipped"])
        pair(f"full default run, {server} ({checks} checks)", s["full_run"], "DCMTK sequence",
             "<= 1.5 s, <= 2x" if server == "orthanc" else "<= 2x")
        pair(f"monitoring echo, {server}", s["echo"], "echoscu", "<= 2x")
    if "count" in m:
        c = m["count"]
        pair(f"C-FIND count, {c['matches']} IMAGE matches", c, "findscu", "<= 1.0x")
    if "startup" in m:
        st = m["startup"]
        rows.append(("qrdoctor --version", sec(st["qrdoctor"]), "python -c pass", sec(st["python"]),
                     "", "", "", "<= 0.1 s", f"{st['qrdoctor']['peak_mb']:.0f} MB",
                     f"{st['python']['peak_mb']:.0f} MB"))
    if "dead_peer" in m:
        d = m["dead_peer"]
        rows.append((f"dead peer, --timeout {d['timeout_s']:g}", sec(d), "", "", "", "", "",
                     f"<= {d['timeout_s'] + 0.5:g} s", f"{d['peak_mb']:.0f} MB", ""))
        rows.append(("  first TCP connection after start", f"{d['first_connection_median_s']:.2f} s",
                     "", "", "", "", "", "<= 0.3 s", "", ""))
    head = ("measure (whole process, median)", "qrdoctor", "reference", "DCMTK", "ratio",
            "NODELAY", "ratio", "target", "qrdoctor RSS", "ref. RSS")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("DCMTK: as shipped (Nagle on); NODELAY: the same with TCP_NODELAY=1; ratio: "
                 "qrdoctor's time / DCMTK's (lower is better). RSS: peak resident memory of the "
                 "process (the largest of the DCMTK sequence's).")
    for server in ("orthanc", "dcmqrscp"):
        if server in m:
            per = m[server]["full_run"]["per_check_median_s"]
            statuses = m[server]["full_run"]["statuses"]
            lines.append(f"\nper check, full run against {server} (median s, status of the last run):")
            lines.append("  " + ", ".join(f"{cid} {v:.2f} {statuses.get(cid, '?')}"
                                          for cid, v in per.items()))
            for key, what in (("dcmtk", "as shipped"), ("dcmtk_nodelay", "TCP_NODELAY=1")):
                seq = m[server]["full_run"][key]["samples"][-1]["steps"]
                lines.append(f"DCMTK sequence, {what} (last run, s): "
                             + ", ".join(f"{k} {v:.3f}" for k, v in seq.items()))
    return "\n".join(lines)


def header(result: dict) -> str:
    mc, src = result["machine"], result["qrdoctor"]
    commit = f" at {src['commit']}" if src.get("commit") else ""
    return (f"qrdoctor {src['qrdoctor_version']} from {Path(src['qrdoctor']).parent.parent}{commit} "
            f"(Python {src['python']}, pynetdicom {src['pynetdicom']}, pydicom {src['pydicom']})\n"
            f"{result['tools'].get('orthanc', 'Orthanc ?')}; {result['tools'].get('dcmtk', 'DCMTK ?')}\n"
            f"machine: {mc['cpus']} CPUs ({mc['cpu']}), Linux {mc['kernel']}, load average at start "
            f"{mc['load_average_at_start'][0]:.2f} (other work on the machine shows there); "
            f"{mc['date']}\n"
            f"corpus: {result['corpus']['orthanc_instances']} instances in Orthanc, "
            f"{result['corpus']['dcmqrscp_instances']} in dcmqrscp; servers: "
            f"{result['peers']}; median of {result['runs']} runs (after one warm-up each, "
            f"interleaved); qrdoctor's bytecode: {result.get('bytecode', 'source')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter whose qrdoctor is measured (default: this one)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--studies", type=int, default=768, help="studies in Orthanc (4 instances each)")
    ap.add_argument("--dcmqrscp-studies", type=int, default=100,
                    help="of those, how many dcmqrscp holds (0: no dcmqrscp)")
    ap.add_argument("--timeout", type=float, default=3.0, help="--timeout of the dead-peer run")
    ap.add_argument("--peers-as-shipped", action="store_true",
                    help="start Orthanc and dcmqrscp without TCP_NODELAY=1 (Nagle on, as a PACS "
                         "built on DCMTK runs unless told otherwise); default: as the tests do")
    ap.add_argument("--json", type=Path, help="save every sample and the medians here")
    ap.add_argument("--text", type=Path, help="save the printed table here")
    ap.add_argument("--bytecode", choices=("cached", "source"), default="cached",
                    help="cached: qrdoctor's processes use compiled bytecode, as an installed "
                         "qrdoctor does (default); source: as the environment says (with "
                         "PYTHONDONTWRITEBYTECODE, every process compiles qrdoctor's modules)")
    ap.add_argument("--show", type=Path, metavar="JSON",
                    help="print the table of a run saved with --json, and measure nothing")
    args = ap.parse_args()
    if args.show:
        saved = json.loads(args.show.read_text())
        print(header(saved) + "\n\n" + table(saved))
        return

    started = time.perf_counter()
    result: dict = {"machine": wp.machine(), "tools": wp.tool_versions(),
                    "qrdoctor": wp.qrdoctor_source(args.python), "runs": args.runs,
                    "peers": "as shipped (Nagle on)" if args.peers_as_shipped else "TCP_NODELAY=1",
                    "bytecode": args.bytecode, "measures": {}}
    qr_port, dcmtk_port = free_ports(2)
    corpus = make_corpus(args.studies, series_per_study=2, instances_per_series=2, seed=20261130)
    small = [ds for ds in corpus if ds.StudyInstanceUID in
             {d.StudyInstanceUID for d in corpus[: 4 * args.dcmqrscp_studies]}]
    result["corpus"] = {"orthanc_instances": len(corpus), "dcmqrscp_instances": len(small),
                        "seed": 20261130, "series_per_study": 2, "instances_per_series": 2}
    keys = series_keys(corpus)
    modalities = {QR_AE: [QR_AE, LOOPBACK, qr_port], STORESCP_AE: [STORESCP_AE, LOOPBACK, dcmtk_port]}
    tmp = Path(tempfile.mkdtemp(prefix="qrdoctor-bench-full-"))
    if args.bytecode == "cached":  # for every child process started from here on
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    bench = Bench(args.python, qr_port, dcmtk_port, tmp)
    print(header(result).split("\n")[0], flush=True)
    orthanc_cls, dcmqrscp_cls = ((ShippedOrthanc, ShippedDcmqrscp) if args.peers_as_shipped
                                 else (OrthancServer, DcmqrscpServer))
    orthanc = orthanc_cls("ORTHANC", {**ORTHANC_ALLOW_ALL, "DicomModalities": modalities})
    qr = None
    try:
        orthanc.start()
        t0 = time.perf_counter()
        orthanc.upload(corpus)
        print(f"Orthanc: {len(corpus)} instances loaded in {time.perf_counter() - t0:.0f} s", flush=True)
        if small:
            qr = dcmqrscp_cls("DCMQRSCP", peers={
                name: (ae, host, port) for name, (ae, host, port) in modalities.items()},
                max_studies=max(args.dcmqrscp_studies, 1))
            qr.start()
            t0 = time.perf_counter()
            qr.store(small)
            print(f"dcmqrscp: {len(small)} instances stored in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        m = result["measures"]
        m["startup"] = measure_startup(bench, args.runs)
        m["orthanc"] = measure_server(bench, "Orthanc", orthanc.target, orthanc.dicom_port,
                                      orthanc.aet, keys, args.runs)
        if qr is not None:
            m["dcmqrscp"] = measure_server(bench, "dcmqrscp", qr.target, qr.dicom_port, qr.aet,
                                           keys, args.runs)
        m["count"] = measure_count(bench, orthanc, len(corpus), args.runs)
        m["dead_peer"] = measure_dead_peer(bench, args.runs, args.timeout)
    finally:
        if qr is not None:
            qr.kill()
        orthanc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    result["benchmark_s"] = time.perf_counter() - started
    text = header(result) + "\n\n" + table(result)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.text:
        args.text.write_text(text + "\n")


if __name__ == "__main__":
    main()
