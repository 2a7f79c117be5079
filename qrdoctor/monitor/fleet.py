"""``qrdoctor fleet``: the staged checks against every node of an inventory, concurrently.

Each node runs in a worker thread with its own :class:`~qrdoctor.core.runner.Runner`, at most
``parallel`` nodes at once. Deadlines: every check has its own (as in ``qrdoctor check``) and the
node's run has one too, the runner's budget (the sum of its checks' deadlines, plus 5 s) or
``node_deadline``; the runner stops its checks at that deadline. Should the runner itself not
return within its deadline plus a grace period, the node is cancelled and reported as timed
out: a node that hangs never holds up the others, and the fleet run is bounded.

The store port. A retrieve check's temporary Store SCP listens on the node's ``store_port``
(its profile's, default 11113), where that PACS was told to send C-MOVE results. Two nodes with
the same store port never retrieve at the same time: a node whose selection holds a retrieve
check holds a lock on its store port for its whole run, so nodes sharing a port run one after
another while nodes with other ports (or without retrieve checks) run alongside. Objects
arriving on a port therefore always come from the one node being retrieved from on it.
(``store_port = 0``, a port the system chooses, needs no lock; it only suits test PACSes whose
destination table is not fixed.)
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass, field

from qrdoctor.core.model import ExitCode, Report
from qrdoctor.monitor.inventory import InventoryError, Node
from qrdoctor.monitor.metrics import echo_rtt_ms, first_problem, node_status

GRACE_S = 5.0  # beyond the node's deadline, before the fleet stops waiting for its runner


@dataclass
class NodeRun:
    """One node's run: its report (redacted unless patient data was included) or why none."""

    node: Node
    report: Report | None = None
    error: str | None = None  # the run could not produce a report
    timed_out: bool = False
    interrupted: bool = False  # the fleet run was interrupted while this node's checks ran
    queued_s: float = 0.0  # waiting for a free worker or for the store port
    started_at: str = ""
    duration_s: float = 0.0
    report_files: dict[str, str] = field(default_factory=dict)  # format -> path (relative to --out-dir)

    @property
    def status(self) -> str:
        if self.report is None or self.interrupted:
            return "error"  # not checked to the end: no verdict on this node
        return node_status(self.report)

    @property
    def exit_code(self) -> int:
        if self.report is None:
            return int(ExitCode.INTERNAL)
        return int(self.report.exit_code)

    @property
    def first_problem(self) -> dict[str, str] | None:
        if self.interrupted:
            return {"check": "", "status": "error", "code": "",
                    "summary": "the fleet run was interrupted before this node's checks had ended"}
        if self.report is None:
            return {"check": "", "status": "error", "code": "", "summary": self.error or "not run"}
        return first_problem(self.report)

    @property
    def echo_rtt_ms(self) -> float | None:
        return echo_rtt_ms(self.report) if self.report is not None else None


def fleet_exit_code(runs: list[NodeRun]) -> int:
    """The worst node's exit status, ranked as for ``check``: a failure (1) before an error (3)."""
    codes = {r.exit_code for r in runs}
    for code in (ExitCode.FAILED, ExitCode.INTERNAL):
        if int(code) in codes:
            return int(code)
    return int(ExitCode.OK)


def node_options(node: Node):
    """The checks' option values the node's profile sets, validated (InventoryError naming it)."""
    from qrdoctor.core.option_fields import catalog_fields, declared_values
    from qrdoctor.core.options import OptionError, RunOptions
    from qrdoctor.core.registry import option_models

    try:
        return RunOptions.from_flat(declared_values(node.settings, catalog_fields()), option_models(), strict=True)
    except OptionError as exc:
        raise InventoryError(f"node {node.name!r}: {exc}") from None


class Fleet:
    """Runs the nodes; ``progress(run, done, total)`` is called (from worker threads, one at a
    time) as each node finishes."""

    def __init__(self, nodes: list[Node], parallel: int = 8, include_phi: bool = False,
                 node_deadline: float | None = None,
                 progress: Callable[[NodeRun, int, int], None] | None = None) -> None:
        from qrdoctor.core.registry import select

        select(None)  # import every check once, here, not in eight threads at once
        self.nodes = nodes
        self.options = {n.name: node_options(n) for n in nodes}
        self.parallel = max(1, parallel)
        self.include_phi = include_phi
        self.node_deadline = node_deadline
        self.progress = progress
        self.salt = secrets.token_bytes(16)
        self._port_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self._runners: list = []
        self.cancelled = threading.Event()
        self.started_at = ""
        self.duration_s = 0.0

    def _port_lock(self, node: Node):
        port = node.target.store_port
        if not port or not node.retrieves:
            return nullcontext()
        with self._lock:
            return self._port_locks.setdefault(port, threading.Lock())

    def cancel(self) -> None:
        """Stop every running node (their checks are cancelled) and skip those not started."""
        self.cancelled.set()
        with self._lock:
            for r in self._runners:
                r.cancel()

    def run_node(self, node: Node) -> NodeRun:
        from qrdoctor.core.runner import Runner, utc_now
        from qrdoctor.reports.redaction import redact_report

        run = NodeRun(node=node)
        queued = time.monotonic()
        with self._port_lock(node):
            run.queued_s = round(time.monotonic() - queued, 3)
            run.started_at = utc_now()
            t0 = time.monotonic()
            if self.cancelled.is_set():
                run.error = "not run: the fleet run was interrupted"
                return run
            try:
                runner = Runner(node.target, only=node.checks, options=self.options[node.name],
                                run_budget=self.node_deadline, command_line=f"qrdoctor fleet: node {node.name}")
            except Exception as exc:  # noqa: BLE001 - a node qrdoctor cannot set up is reported, not fatal
                run.error = f"qrdoctor could not set up this node's run: {type(exc).__name__}: {exc}"
                return run
            with self._lock:
                self._runners.append(runner)
            box: dict[str, object] = {}

            def work() -> None:
                try:
                    box["report"] = runner.run()
                except BaseException as exc:  # noqa: BLE001 - becomes the node's error
                    box["exc"] = exc

            worker = threading.Thread(target=work, name=f"qrdoctor-fleet-{node.name}", daemon=True)
            worker.start()
            worker.join(runner.budget() + GRACE_S)
            if worker.is_alive():
                runner.cancel()
                worker.join(GRACE_S)
            run.duration_s = round(time.monotonic() - t0, 3)
            with self._lock:
                self._runners.remove(runner)
                run.interrupted = self.cancelled.is_set()
        report = box.get("report")
        if isinstance(report, Report):
            run.report = redact_report(report, include_phi=self.include_phi, salt=self.salt)
        elif "exc" in box:
            exc = box["exc"]
            run.error = f"qrdoctor could not complete this node's run: {type(exc).__name__}: {exc}"
        else:
            run.timed_out = True
            run.error = (f"the run did not end within its deadline ({runner.budget():.0f} s) and was "
                         "stopped")
        return run

    def run(self) -> list[NodeRun]:
        """Every node's run, in inventory order."""
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        t0 = time.monotonic()
        results: dict[str, NodeRun] = {}
        done = 0
        report_lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="qrdoctor-fleet") as pool:
            futures = {pool.submit(self.run_node, n): n for n in self.nodes}
            try:
                for fut in as_completed(futures):
                    node = futures[fut]
                    try:
                        run = fut.result()
                    except Exception as exc:  # noqa: BLE001
                        run = NodeRun(node=node, error=f"qrdoctor could not run this node: {type(exc).__name__}: {exc}")
                    results[node.name] = run
                    done += 1
                    if self.progress is not None:
                        with report_lock:
                            self.progress(run, done, len(self.nodes))
            except KeyboardInterrupt:
                self.cancel()
                for fut in futures:
                    fut.cancel()
                raise
        self.duration_s = round(time.monotonic() - t0, 3)
        return [results[n.name] for n in self.nodes]
