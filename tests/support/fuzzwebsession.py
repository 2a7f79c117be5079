"""One fuzzed DICOMweb session: a DICOMweb-only qrdoctor run (``dicomweb.qido`` and
``dicomweb.wado``, the Runner, in-process) against :class:`support.fuzzweb.WebFuzzPeer`, judged.

A seed decides the session: which answers are mutated (one emission of a clean run, or at a
rate for a few seeds) and how. The verdict lists every problem (see :mod:`support.fuzzsession`
for the categories ``traceback``, ``error``, ``hang``, ``render``, ``peer``), plus:

- ``memory``: the process's peak resident size grew by more than :data:`MAX_RSS_GROWTH_MB`;
- ``leak``: a rendered report (Markdown, HTML, terminal; JSON as text) holds a raw control
  character, or markup the peer planted (:data:`support.fuzzwebmutate.MARK` inside ``<script>``,
  ``<img``, a Markdown link) reached Markdown or HTML unescaped.
"""

from __future__ import annotations

import random
import re
import resource
import threading
import time
import traceback
from dataclasses import dataclass

from qrdoctor.console import check_line, details
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.reports import render

from support.fuzzsession import (
    EXIT_GRACE_S,
    Problem,
    Verdict,
    check_problems,
    escapes,
    render_problems,
    top_frame,
)
from support.fuzzweb import WebFuzzPeer, WebStrikes
from support.fuzzwebmutate import MARK

TIMEOUT_S = 1.0
MAX_RSS_GROWTH_MB = 300
CHECKS = ["dicomweb.qido", "dicomweb.wado"]
# A raw control character: C0 but tab and line feed, DEL, C1; and the bidi and zero-width
# characters :mod:`qrdoctor.core.escape` removes for the terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_MARKUP = {
    "md": re.compile(rf"<script>{MARK}|<img src=x|(?<!\\)\]\(javascript:{MARK}"),  # "\](": no link
    "html": re.compile(rf"<script>{MARK}|<img src=x"),
}
# Markdown that no renderer reads as markup: fenced code blocks and code spans.
_MD_CODE = re.compile(r"^[ \t]*(`{3,})[^\n]*\n.*?^[ \t]*\1[ \t]*$|(`+)(?!`).*?(?<!`)\2(?!`)", re.M | re.S)


@dataclass
class WebPlan:
    seed: int
    strikes: WebStrikes

    def describe(self) -> str:
        s = self.strikes
        where = (f"pinned {s.pinned}" if s.pinned else f"emissions {sorted(s.at)}" if s.at
                 else f"rate {s.rate} x{s.limit}")
        return f"seed {self.seed}: dicomweb; {where}"


def make_plan(seed: int, count: int, pin: tuple[int, str] | None = None) -> WebPlan:
    rng = random.Random(f"web:{seed}")
    if pin is not None:
        return WebPlan(seed, WebStrikes(seed, pinned={pin[0]: pin[1]}))
    if rng.random() < 0.15:
        return WebPlan(seed, WebStrikes(seed, rate=rng.choice((0.05, 0.1, 0.3)), limit=rng.randrange(2, 6)))
    return WebPlan(seed, WebStrikes(seed, at={rng.randrange(max(1, count))}))


def _lingering(before: set[threading.Thread]) -> list[threading.Thread]:
    end = time.monotonic() + EXIT_GRACE_S
    while True:
        alive = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
                 and not t.name.startswith("fuzzweb")]
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.02)


def leak_problems(report) -> list[Problem]:
    """Raw control characters in any rendered text; planted markup in Markdown or HTML."""
    texts = {fmt: render(report, fmt) for fmt in ("json", "md", "html")}
    texts["console"] = "\n".join([*(check_line(c) for c in report.checks), *details(report)])
    out = []
    for fmt, text in texts.items():
        m = _CONTROL.search(text)
        if m:
            where = text[max(0, m.start() - 60):m.end() + 20]
            out.append(Problem("leak", f"{fmt}: control U+{ord(m.group()):04X}", fmt, repr(where)))
        pattern = _MARKUP.get(fmt)
        m = pattern.search(_MD_CODE.sub("", text) if fmt == "md" else text) if pattern else None
        if m:
            out.append(Problem("leak", f"{fmt}: markup", fmt, repr(m.string[max(0, m.start() - 80):m.end() + 40])))
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_web_session(seed: int, count: int = 0, *, plan: WebPlan | None = None, timeout: float = TIMEOUT_S,
                    pin: tuple[int, str] | None = None) -> Verdict:
    plan = plan or make_plan(seed, count, pin)
    problems: list[Problem] = []
    before = set(threading.enumerate())
    report, seconds, budget = None, 0.0, 0.0
    rss0 = _rss_mb()
    with escapes(problems, peer_threads="fuzzweb"):
        peer = WebFuzzPeer(plan.strikes)
        with peer:
            runner = Runner(Target.dicomweb_only(peer.url, timeout=timeout), only=CHECKS,
                            options={"dicomweb": peer.url})
            budget = runner.budget()
            t0 = time.monotonic()
            try:
                report = runner.run()
            except Exception as exc:  # noqa: BLE001 - the run itself crashed
                tb = traceback.format_exc()
                problems.append(Problem("traceback", type(exc).__name__, top_frame(tb), tb))
            seconds = time.monotonic() - t0
            if seconds > budget + EXIT_GRACE_S:
                problems.append(Problem("hang", "run over budget", f"{seconds:.1f}s>{budget:.0f}s"))
            problems += [Problem("hang", "non-daemon thread alive after the run", t.name) for t in _lingering(before)]
    if report is not None:
        problems += check_problems(report) + render_problems(report)
        if not any(p.category == "render" for p in problems):
            problems += leak_problems(report)
    grew = _rss_mb() - rss0
    if grew > MAX_RSS_GROWTH_MB:
        problems.append(Problem("memory", f"peak RSS +{grew:.0f} MB", "session"))
    problems += [Problem("peer", "fuzzweb error", top_frame(tb), tb) for tb in peer.errors]
    statuses = {c.id: c.status.value for c in report.checks} if report is not None else {}
    return Verdict(plan.describe(), seconds, budget, list(plan.strikes.applied), statuses, problems,
                   peer.connections)


_COUNT: dict[float, int] = {}


def clean_count(timeout: float = TIMEOUT_S) -> int:
    """How many answers the peer gives in a clean, unmutated session (cached)."""
    if timeout not in _COUNT:
        plan = WebPlan(0, WebStrikes(0))
        verdict = run_web_session(0, plan=plan, timeout=timeout)
        if not verdict.ok or set(verdict.statuses.values()) - {"pass", "warn"}:
            raise AssertionError("the clean DICOMweb session has problems:\n" + verdict.summary())
        _COUNT[timeout] = plan.strikes.count
    return _COUNT[timeout]
