"""``--nagios``: the Monitoring Plugins API (https://www.monitoring-plugins.org/doc/guidelines.html).

The first line of output is ``QRDOCTOR STATE - text | perfdata`` and the exit status is the
state's number: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Further lines (the "long text") name the
other checks that did not pass; they carry no performance data.

A run's state: CRITICAL when a check failed; UNKNOWN when a check could not complete (``error``:
qrdoctor could not test, which says nothing about the PACS) or the run was interrupted; WARNING
when a check warned; else OK. ``--warning`` / ``--critical`` ranges apply to every latency (in
seconds: TCP connect, association, C-ECHO round trip, each C-FIND) and raise the state when a
latency lies outside (or, with ``@``, inside) the range. The worst state wins, in the order
OK < WARNING < UNKNOWN < CRITICAL.

Performance data: ``'label'=value[UOM];[warn];[crit];[min];[max]`` -- see
:mod:`qrdoctor.monitor.metrics` for where each value comes from. Latencies are in seconds (UOM
``s``) with the threshold ranges as given; the match limit (only when a cap was proven) and
retrieve rates (objects per second) carry no unit, since the API has none for them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import Report
from qrdoctor.monitor.metrics import Measure, first_problem, measures

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
_SEVERITY = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}  # which state is worse
_FROM_STATUS = {"pass": OK, "skipped": OK, "warn": WARNING, "error": UNKNOWN, "fail": CRITICAL}
PREFIX = "QRDOCTOR"


def worse(a: int, b: int) -> int:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


class RangeError(ValueError):
    pass


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE_RE = re.compile(rf"^(?P<inside>@)?(?:(?P<start>~|{_NUMBER})?:)?(?P<end>{_NUMBER})?$")


@dataclass(frozen=True)
class Range:
    """A threshold range in the plugin syntax ``[@]start:end``.

    ``10`` is 0..10; ``10:`` is 10..infinity; ``~:10`` is -infinity..10; ``10:20`` is 10..20.
    A value outside the range raises an alert; with a leading ``@``, a value inside it
    (endpoints included) does.
    """

    start: float
    end: float
    inside: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> Range:
        t = text.strip()
        m = _RANGE_RE.match(t)
        if not t or not m or t in ("@", ":", "@:") or (m.group("start") is None and m.group("end") is None
                                                        and ":" not in t):
            raise RangeError(f"threshold {text!r} is not a range (e.g. 10, 10:, ~:10, 10:20, @10:20)")
        start_text, end_text = m.group("start"), m.group("end")
        if ":" not in t:  # a lone number N is 0:N
            start, end = 0.0, float(end_text)
        else:
            start = -math.inf if start_text == "~" else float(start_text) if start_text else 0.0
            end = float(end_text) if end_text else math.inf
        if start > end:
            raise RangeError(f"threshold {text!r}: the start {start:g} is greater than the end {end:g}")
        return cls(start, end, bool(m.group("inside")), t)

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within


def number(value: float) -> str:
    """A value as the API wants it: digits, a point, a minus sign; never an exponent."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


_PLAIN_LABEL = re.compile(r"^[A-Za-z0-9_.\-]+$")


def label(text: str) -> str:
    """A perfdata label: ``=`` and ``'`` are not allowed in one; quoted unless it is plain."""
    clean = "".join("_" if ch in "='|" or not ch.isprintable() else ch for ch in text) or "_"
    return clean if _PLAIN_LABEL.match(clean) else f"'{clean}'"


def perfdatum(name: str, value: float, uom: str = "", warn: str = "", crit: str = "",
              minimum: float | None = None, maximum: float | None = None) -> str:
    parts = [warn, crit, "" if minimum is None else number(minimum), "" if maximum is None else number(maximum)]
    tail = ";".join(parts).rstrip(";")
    return f"{label(name)}={number(value)}{uom}" + (f";{tail}" if tail else "")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(text: str) -> str:
    """Plugin text: one line, no ``|`` (it starts the performance data), no control or format
    characters (a summary may quote the PACS; the monitoring system shows or stores the line as
    it is) and no undecodable bytes (lone surrogates, which cannot be written as UTF-8)."""
    one_line = " ".join(str(text).split())
    clean = _SURROGATE.sub("\ufffd", for_terminal(one_line))
    return " ".join(clean.replace("|", "/").split())


@dataclass
class Thresholds:
    warning: Range | None = None
    critical: Range | None = None

    @classmethod
    def parse(cls, warning: str | None, critical: str | None) -> Thresholds:
        return cls(Range.parse(warning) if warning else None, Range.parse(critical) if critical else None)

    def state(self, value: float) -> int:
        if self.critical is not None and self.critical.alerts(value):
            return CRITICAL
        if self.warning is not None and self.warning.alerts(value):
            return WARNING
        return OK


@dataclass
class PluginOutput:
    state: int
    text: str
    perfdata: list[str]
    long_text: list[str]

    def lines(self) -> list[str]:
        head = f"{PREFIX} {STATE_NAMES[self.state]} - {_text(self.text)}"
        if self.perfdata:
            head += " | " + " ".join(self.perfdata)
        return [head, *(_text(line) for line in self.long_text)]

    def render(self) -> str:
        return "\n".join(self.lines()) + "\n"


def _measure_perfdata(ms: Iterable[Measure], th: Thresholds, prefix: str = "") -> list[str]:
    out = []
    for m in ms:
        if m.latency:
            out.append(perfdatum(prefix + m.label, m.value, m.unit,
                                 th.warning.text if th.warning else "", th.critical.text if th.critical else "", 0))
        else:
            out.append(perfdatum(prefix + m.label, m.value, m.unit, minimum=0))
    return out


def _threshold_breaches(ms: Iterable[Measure], th: Thresholds) -> tuple[int, list[str]]:
    state, said = OK, []
    for m in ms:
        if not m.latency:
            continue
        s = th.state(m.value)
        if s != OK:
            which = "critical" if s == CRITICAL else "warning"
            rng = th.critical if s == CRITICAL else th.warning
            said.append(f"{m.label} {number(m.value)} s outside the {which} range {rng.text}")  # type: ignore[union-attr]
            state = worse(state, s)
    return state, said


def report_state(report: Report, th: Thresholds) -> tuple[int, str, list[str]]:
    """The state of one run, the text of its first line and its long-text lines."""
    status_state = OK
    for c in report.checks:
        status_state = worse(status_state, _FROM_STATUS.get(c.status.value, UNKNOWN))
    if report.interrupted:
        status_state = worse(status_state, UNKNOWN)
    limit_state, breaches = _threshold_breaches(measures(report), th)
    state = worse(status_state, limit_state)
    target = f"{report.target.called_ae}@{report.target.host}:{report.target.port}"
    problem = first_problem(report)
    if problem:
        code = f" {problem['code']}" if problem["code"] else ""
        text = f"{target}: {problem['check']}{code}: {problem['summary']}"
    elif report.interrupted:
        text = f"{target}: the run was interrupted before every check had finished"
    else:
        ran = sum(1 for c in report.checks if c.status.value == "pass")
        text = f"{target}: {ran} checks passed"
    long_text = [f"{c.id}: {c.status.value} - {c.summary or c.reason or ''}" for c in report.checks
                 if c.status.value in ("warn", "fail", "error")]
    if breaches and _SEVERITY[limit_state] >= _SEVERITY[status_state]:
        text = f"{target}: {'; '.join(breaches)}"
    else:
        long_text += breaches
    return state, text, long_text


def check_output(report: Report, th: Thresholds) -> PluginOutput:
    """The plugin output of one ``qrdoctor check`` run."""
    state, text, long_text = report_state(report, th)
    perf = _measure_perfdata(measures(report), th)
    perf.append(perfdatum("duration", report.duration_s, "s", minimum=0))
    return PluginOutput(state, text, perf, long_text)


def fleet_output(nodes: list[tuple[str, Report | None, str | None]], th: Thresholds,
                 duration_s: float) -> PluginOutput:
    """One plugin output for a fleet run: ``nodes`` are (name, report or None, why none).

    The state is the worst node's; a node without a report (it could not be run) is UNKNOWN.
    Performance data: how many nodes are in each state, the slowest C-ECHO round trip among the
    nodes (with the thresholds), and the run's duration.
    """
    counts = {OK: 0, WARNING: 0, CRITICAL: 0, UNKNOWN: 0}
    state = OK
    bad: dict[int, list[str]] = {WARNING: [], CRITICAL: [], UNKNOWN: []}
    long_text: list[str] = []
    slowest: Measure | None = None
    for name, report, why in nodes:
        if report is None:
            s, text = UNKNOWN, f"{name}: {why or 'not run'}"
        else:
            s, text, _ = report_state(report, th)
            for m in measures(report):
                if m.name == "echo_rtt" and (slowest is None or m.value > slowest.value):
                    slowest = m
            problem = first_problem(report)
            text = f"{name}: {problem['check']} {problem['code']}".rstrip() if problem else f"{name}: {text}"
        counts[s] += 1
        state = worse(state, s)
        if s != OK:
            bad[s].append(name)
            long_text.append(f"{STATE_NAMES[s]} {text}")
    total = len(nodes)
    summary = ", ".join(f"{counts[s]} {STATE_NAMES[s]}" for s in (OK, WARNING, CRITICAL, UNKNOWN) if counts[s])
    text = f"{total} node{'' if total == 1 else 's'}: {summary or 'none'}"
    for s in (CRITICAL, UNKNOWN, WARNING):
        if bad[s]:
            shown = ", ".join(bad[s][:5]) + (f" and {len(bad[s]) - 5} more" if len(bad[s]) > 5 else "")
            text += f"; {STATE_NAMES[s]}: {shown}"
    perf = [perfdatum(f"nodes_{STATE_NAMES[s].lower()}", counts[s], "", minimum=0, maximum=total)
            for s in (OK, WARNING, CRITICAL, UNKNOWN)]
    if slowest is not None:
        perf.append(perfdatum("echo_rtt_max", slowest.value, "s", th.warning.text if th.warning else "",
                              th.critical.text if th.critical else "", 0))
    perf.append(perfdatum("duration", duration_s, "s", minimum=0))
    return PluginOutput(state, text, perf, long_text)
