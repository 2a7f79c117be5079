"""Benchmark: a fleet run against many simulated PACSes on loopback.

Starts N embedded simulated PACSes (``qrdoctor.simulator.SimulatedPACS``, all in one child
process -- or in this one with ``--same-process`` -- each on its own loopback port, a small
archive each), writes an inventory whose nodes run the monitoring selection "echo + find"
(``checks = ["association.echo", "find.levels"]``: C-ECHO and one query per level of each
model, with their requirements network.tcp, network.tls and association.models), and times
``qrdoctor fleet`` on it (in-process, wall clock, the terminal table discarded), ``--repeat``
times, reporting each run, the median and the load average. ``--checks`` measures another
selection (e.g. ``association.echo find`` for the whole find stage, with find.match_limit's
proof queries, which do not belong in a run repeated every minute).

The simulators share the machine's CPU with qrdoctor (and, with ``--same-process``, its
GIL), so the figure is an upper bound for N remote PACSes. Run from the repository root:

    python benchmarks/fleet.py [--nodes 200] [--parallel 8] [--repeat 3] [--studies 5]
                               [--checks association.echo find.levels]
                               [--same-process | --sim-processes K]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from qrdoctor.cli import main
from qrdoctor.simulator import SimulatedPACS

MONITORING_CHECKS = ["association.echo", "find.levels"]


def inventory(nodes: list[tuple[str, int]], path: Path, checks: list[str] = MONITORING_CHECKS) -> None:
    parts = [f"[groups.bench]\nchecks = {json.dumps(checks)}\n"]
    for i, (ae, port) in enumerate(nodes):
        parts.append(f'[profiles.N{i:03d}]\ncalled_ae = "{ae}"\nhost = "127.0.0.1"\nport = {port}\n'
                     'group = "bench"\n')
    path.write_text("\n".join(parts))


def start(n: int, studies: int, first: int = 0) -> list[SimulatedPACS]:
    return [SimulatedPACS(ae_title=f"SIM{i:03d}", port=0, studies=studies, seed=i + 1).start()
            for i in range(first, first + n)]


def child(n: int, studies: int, conn, first: int = 0) -> None:
    pacses = start(n, studies, first)
    conn.send([(p.ae_title, p.port) for p in pacses])
    conn.recv()  # until the parent is done
    for p in pacses:
        p.stop()


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--parallel", type=int, nargs="+", default=[8])
    ap.add_argument("--repeat", type=int, default=3, help="runs per --parallel value (the median is shown)")
    ap.add_argument("--checks", nargs="+", default=MONITORING_CHECKS, help="the nodes' check selection")
    ap.add_argument("--studies", type=int, default=5)
    ap.add_argument("--same-process", action="store_true", help="run the simulators in this process")
    ap.add_argument("--sim-processes", type=int, default=1, help="child processes to spread the simulators over")
    args = ap.parse_args()
    pacses: list[SimulatedPACS] = []
    children = []
    if args.same_process:
        pacses = start(args.nodes, args.studies)
        nodes = [(p.ae_title, p.port) for p in pacses]
    else:
        nodes = []
        k = max(1, args.sim_processes)
        for j in range(k):
            first, n = j * args.nodes // k, (j + 1) * args.nodes // k - j * args.nodes // k
            parent, kid = multiprocessing.Pipe()
            proc = multiprocessing.get_context("fork").Process(target=child, args=(n, args.studies, kid, first))
            proc.start()
            children.append((proc, parent))
        for _, parent in children:
            nodes += parent.recv()
    where = "in this process" if args.same_process else f"in {len(children)} child process(es)"
    print(f"{args.nodes} simulated PACSes {where}; fleet runs:", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inv = Path(tmp) / "fleet.toml"
            inventory(nodes, inv, args.checks)
            what = " + ".join(args.checks)
            for parallel in args.parallel:
                took: list[float] = []
                for attempt in range(max(1, args.repeat)):
                    out = Path(tmp) / f"fleet-{parallel}-{attempt}.json"
                    sink_out, sink_err = io.StringIO(), io.StringIO()
                    t0 = time.perf_counter()
                    with contextlib.redirect_stdout(sink_out), contextlib.redirect_stderr(sink_err):
                        code = main(["fleet", str(inv), "--parallel", str(parallel), "--json", str(out)])
                    took.append(time.perf_counter() - t0)
                    doc = json.loads(out.read_text())
                    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                    print(f"--parallel {parallel:>3}: {args.nodes} nodes ({what}) in {took[-1]:.1f} s, "
                          f"exit {code}, nodes {doc['summary']}, load average {load}")
                if len(took) > 1:
                    print(f"--parallel {parallel:>3}: median of {len(took)}: {statistics.median(took):.1f} s")
    finally:
        for p in pacses:
            p.stop()
        for proc, parent in children:
            parent.send("done")
            proc.join(30)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
