"""One fuzzed session: a qrdoctor run (the Runner, in-process) against the fuzzing peer, judged.

A seed decides everything: which check the session aims at (or a whole run), which emission of
the peer is mutated and how (:mod:`support.fuzzpeer`, :mod:`support.fuzzmutate`), and the valid
choices a PACS may make (transfer syntax, PDV packing, maximum PDU length). The verdict lists
every problem of the session:

- ``traceback``: an exception escaped -- from ``Runner.run()`` itself or any thread
  (``threading.excepthook``, ``sys.unraisablehook``);
- ``error``: a check ended in ``error`` -- caused by peer bytes, since the peer is all that varies:
  ``facts.exception`` (a crash) or its time limit (qrdoctor had to cut it off);
- ``hang``: the run outlived its own budget by more than a second, or a non-daemon thread that
  qrdoctor or pynetdicom started was still alive a second after the run (while the peer holds its
  connections open), which keeps the process from exiting;
- ``files``: a ``qrdoctor-retrieve-*`` folder was left behind;
- ``render``: a report format (JSON, Markdown, HTML, bundle) or the console lines failed to render;
- ``peer``: the fuzzing peer itself failed (a bug here, not in qrdoctor).

Problems are deduplicated by category, exception type and top frame (:attr:`Problem.key`).
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from qrdoctor.console import check_line, details
from qrdoctor.core.model import Status
from qrdoctor.core.runner import NullObserver, Runner
from qrdoctor.core.target import Target
from qrdoctor.reports import FORMATS, render

from support.fuzzpeer import FuzzPACS, Strikes
from support.ports import free_port

CALLED_AE = "FUZZPACS"
TIMEOUT_S = 1.0
EXIT_GRACE_S = 1.0  # threads may take this long after the run to end (the "plus a second")
# How often each check is the session's aim: the retrieve checks see the most kinds of message.
# Other checks are reached by the whole runs. Changing this table changes what every seed means.
AIMS = {"association.echo": 3, "association.ae_titles": 2, "association.models": 2, "find.levels": 3,
        "find.return_keys": 1, "find.match_limit": 1, "match.wildcards": 1, "match.ranges": 1,
        "match.lists": 1, "retrieve.move": 4, "retrieve.get": 3}
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


@dataclass(frozen=True)
class Problem:
    category: str
    exception: str  # exception type, or what went wrong (deadline, thread name, ...)
    frame: str  # the innermost frame (file:line:function), or where it was seen
    detail: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"{self.category} {self.exception} @ {self.frame}"


def top_frame(tb: str) -> str:
    frames = _FRAME.findall(tb or "")
    if not frames:
        return "?"
    path, line, fn = frames[-1]
    return f"{'/'.join(Path(path).parts[-2:])}:{line}:{fn}"


@dataclass
class Plan:
    seed: int
    only: list[str] | None
    strikes: Strikes
    explicit: bool
    together: bool
    max_pdu: int

    def describe(self) -> str:
        aim = ",".join(self.only) if self.only else "whole run"
        where = {k: sorted(v) for k, v in self.strikes.at.items()} or f"rate {self.strikes.rate} x{self.strikes.limit}"
        return (f"seed {self.seed}: {aim}; strikes {where}; {'explicit' if self.explicit else 'implicit'} VR, "
                f"{'packed' if self.together else 'one PDV per PDU'}, max PDU {self.max_pdu}")


@dataclass(frozen=True)
class Pin:
    """One mutation named outright: the check, the peer's emission number in it, the operator."""

    check: str
    emission: int
    operator: str


def make_plan(seed: int, counts: dict[str | None, int], whole_share: float = 0.1, pin: Pin | None = None) -> Plan:
    """The session a seed stands for; ``counts`` are the emissions per check of a clean run.
    With ``pin``, the session strikes only there (the seed still decides the rest)."""
    rng = random.Random(seed)
    explicit, together = rng.random() < 0.5, rng.random() < 0.3
    max_pdu = rng.choice((16384, 4096, 65536, 1 << 20))
    if pin is not None:
        strikes = Strikes(seed, at={pin.check: {pin.emission}}, pinned={(pin.check, pin.emission): pin.operator})
        return Plan(seed, [pin.check], strikes, explicit, together, max_pdu)
    if rng.random() < whole_share:
        strikes = Strikes(seed, rate=rng.choice((0.02, 0.05, 0.1)), limit=rng.randrange(1, 5))
        return Plan(seed, None, strikes, explicit, together, max_pdu)
    aim = rng.choices(list(AIMS), weights=list(AIMS.values()))[0]
    strike = rng.randrange(max(1, counts.get(aim, 1)))
    return Plan(seed, [aim], Strikes(seed, at={aim: {strike}}), explicit, together, max_pdu)


@dataclass
class Verdict:
    plan: str
    seconds: float
    budget: float
    mutations: list[str]
    statuses: dict[str, str]
    problems: list[Problem]
    peer_connections: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [self.plan, f"  mutations: {self.mutations or 'none (the strike was never reached)'}",
                 f"  {self.seconds:.2f} s of a {self.budget:.0f} s budget; statuses {self.statuses}"]
        for p in self.problems:
            lines.append(f"  PROBLEM {p.key}")
            lines.extend("    " + line for line in p.detail.strip().splitlines()[-30:])
        return "\n".join(lines)


class _Aim(NullObserver):
    """Tells the peer which check runs now, so its strikes count emissions per check."""

    def __init__(self, strikes: Strikes) -> None:
        self.strikes = strikes

    def check_started(self, check) -> None:
        self.strikes.check = check.id


@contextlib.contextmanager
def escapes(problems: list[Problem], peer_threads: str = "fuzzpeer"):
    """Exceptions that escape any thread (but the hostile peer's own, named ``peer_threads...``),
    and the unraisable ones, become problems."""
    old_thread, old_unraisable = threading.excepthook, sys.unraisablehook

    def on_thread(args) -> None:
        if args.thread is not None and args.thread.name.startswith(peer_threads):
            return
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        problems.append(Problem("traceback", args.exc_type.__name__, top_frame(tb), tb))

    def on_unraisable(args) -> None:
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        problems.append(Problem("traceback", args.exc_type.__name__, top_frame(tb), f"{args.err_msg}\n{tb}"))

    threading.excepthook, sys.unraisablehook = on_thread, on_unraisable
    try:
        yield
    finally:
        threading.excepthook, sys.unraisablehook = old_thread, old_unraisable


@contextlib.contextmanager
def _private_tempdir(root: Path):
    """tempfile's folder pointed at a fresh one, so files a session leaves are its own."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-session-", dir=root))
    old = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = old
        shutil.rmtree(folder, ignore_errors=True)


def _lingering(before: set[threading.Thread]) -> list[threading.Thread]:
    """Non-daemon threads started during the session that are still alive after the grace."""
    end = time.monotonic() + EXIT_GRACE_S
    while True:
        alive = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
                 and not t.name.startswith("fuzzpeer")]
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.02)


def _thread_problem(t: threading.Thread) -> Problem:
    """A thread that would keep the process alive, with where it is stuck."""
    frame = sys._current_frames().get(t.ident or -1)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
    return Problem("hang", "non-daemon thread alive after the run", top_frame(stack),
                   f"{t.name} still running {EXIT_GRACE_S} s after the run, at:\n{stack}")


def check_problems(report) -> list[Problem]:
    out = []
    for c in report.checks:
        if c.status is not Status.ERROR:
            continue
        facts = c.facts or {}
        if facts.get("exception"):
            tb = str(facts.get("traceback", ""))
            out.append(Problem("error", str(facts["exception"]), top_frame(tb), f"{c.id}: {c.reason}\n{tb}"))
        else:
            seen = "\n".join(c.transcript[-25:])  # what the check was doing when its time ran out
            out.append(Problem("error", "deadline", c.id, f"{c.id}: {c.reason}\nlast transcript lines:\n{seen}"))
    return out


def render_problems(report) -> list[Problem]:
    out = []
    for fmt in (*FORMATS, "console"):
        try:
            if fmt == "console":
                "\n".join([*(check_line(c) for c in report.checks), *details(report)])
            else:
                render(report, fmt)
        except Exception as exc:  # noqa: BLE001 - every failure to render is a problem
            tb = traceback.format_exc()
            out.append(Problem("render", f"{fmt}: {type(exc).__name__}", top_frame(tb), tb))
    return out


def run_session(seed: int, root: Path, counts: dict[str | None, int] | None = None, *,
                plan: Plan | None = None, timeout: float = TIMEOUT_S, whole_share: float = 0.1,
                pin: Pin | None = None) -> Verdict:
    """Run one fuzzed session in this process and judge it."""
    plan = plan or make_plan(seed, counts or {}, whole_share, pin)
    problems: list[Problem] = []
    before = set(threading.enumerate())
    store_port = free_port()
    report, seconds, budget = None, 0.0, 0.0
    with escapes(problems), _private_tempdir(root) as tmp:
        peer = FuzzPACS(plan.strikes, ae_title=CALLED_AE, store_port=store_port, explicit=plan.explicit,
                        together=plan.together, max_pdu=plan.max_pdu)
        with peer:
            target = Target("127.0.0.1", peer.port, CALLED_AE, store_port=store_port, timeout=timeout)
            retrieves = plan.only is None or any(c.startswith("retrieve.") for c in plan.only)
            # one check at a time: a strike names the check that receives it, and a seed must
            # keep meaning the same session
            options = {"max_associations": 1} | ({"listen_host": "127.0.0.1"} if retrieves else {})
            runner = Runner(target, only=plan.only, observer=_Aim(plan.strikes), options=options)
            budget = runner.budget()
            t0 = time.monotonic()
            try:
                report = runner.run()
            except Exception as exc:  # noqa: BLE001 - the run itself crashed: no report at all
                tb = traceback.format_exc()
                problems.append(Problem("traceback", type(exc).__name__, top_frame(tb), tb))
            seconds = time.monotonic() - t0
            if seconds > budget + EXIT_GRACE_S:
                problems.append(Problem("hang", "run over budget", f"{seconds:.1f}s>{budget:.0f}s"))
            problems += [_thread_problem(t) for t in _lingering(before)]
        left = sorted(p.name for p in tmp.glob("qrdoctor-retrieve-*"))
        if left:
            problems.append(Problem("files", "qrdoctor-retrieve-* left", "tempdir", ", ".join(left)))
    if report is not None:
        problems += check_problems(report) + render_problems(report)
    problems += [Problem("peer", "fuzzpeer error", top_frame(tb), tb) for tb in peer.errors]
    statuses = {c.id: c.status.value for c in report.checks} if report is not None else {}
    return Verdict(plan.describe(), seconds, budget, list(plan.strikes.applied), statuses, problems,
                   peer.connections)


_COUNTS: dict[float, dict[str | None, int]] = {}


def emission_counts(root: Path, timeout: float = TIMEOUT_S) -> dict[str | None, int]:
    """How many messages the peer sends during each check of a clean, unmutated run (cached)."""
    if timeout not in _COUNTS:
        clean = Plan(0, None, Strikes(0), False, False, 16384)
        verdict = run_session(0, root, plan=clean, timeout=timeout)
        if not verdict.ok:
            raise AssertionError("the clean session has problems:\n" + verdict.summary())
        _COUNTS[timeout] = dict(clean.strikes.counts)
    return _COUNTS[timeout]

