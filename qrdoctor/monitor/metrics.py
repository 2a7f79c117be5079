"""The numbers monitoring systems chart, read from a report's facts (one place for Nagios
performance data and Prometheus metrics alike).

Where each comes from (the fact, in the JSON report):

==================  ======================================================  ===========
measure             fact                                                    unit
==================  ======================================================  ===========
``tcp_connect``     ``network.tcp`` ``connect_ms``: the TCP handshake        seconds
``association``     ``association.echo`` ``association_ms``: from opening   seconds
                    the connection to the PACS's answer to the association
                    request (A-ASSOCIATE-AC, -RJ)
``echo_rtt``        ``association.echo`` ``rtt_ms``: C-ECHO request to      seconds
                    response
``find``            ``find.levels`` ``levels[].ms`` per information model   seconds
                    and level: one C-FIND, request to final response (when
                    qrdoctor cancelled a long answer -- ``complete`` false
                    -- to the response after its C-CANCEL)
``match_limit``     ``find.match_limit`` ``limit``, only when a cap was     matches
                    proven (no cap found: no value)
``objects_per_s``   ``retrieve.move`` / ``retrieve.get`` ``objects_per_s``:  objects/s
                    objects received per second while they arrived
==================  ======================================================  ===========

A value is present only where the check ran and measured it; nothing is guessed or filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qrdoctor.core.model import Report

MODEL_SHORT = {"patient_root": "patient", "study_root": "study", "patient_study_only": "patientstudy"}


@dataclass(frozen=True)
class Measure:
    name: str  # tcp_connect, association, echo_rtt, find, match_limit, objects_per_s
    check: str  # the check whose facts hold it
    value: float
    unit: str  # "s", "" (a count or a rate)
    latency: bool  # thresholds (--warning/--critical) apply
    labels: dict[str, str] = field(default_factory=dict)  # model/level of a C-FIND

    @property
    def label(self) -> str:
        """A short name for one line of performance data: find_study_STUDY, echo_rtt, ..."""
        if self.name == "find":
            model = MODEL_SHORT.get(self.labels.get("model", ""), self.labels.get("model", ""))
            return f"find_{model}_{self.labels.get('level', '')}"
        if self.name == "objects_per_s":
            return f"{self.check.split('.')[-1]}_objects_per_s"
        return self.name


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def measures(report: Report) -> list[Measure]:
    """Every measured value of the report, in check order."""
    out: list[Measure] = []
    for c in report.checks:
        f = c.facts or {}
        if c.id == "network.tcp" and f.get("result") == "connected":
            if (v := _number(f.get("connect_ms"))) is not None:
                out.append(Measure("tcp_connect", c.id, v / 1000, "s", True))
        elif c.id == "association.echo":
            if f.get("accepted") and (v := _number(f.get("association_ms"))) is not None:
                out.append(Measure("association", c.id, v / 1000, "s", True))
            if (v := _number(f.get("rtt_ms"))) is not None:
                out.append(Measure("echo_rtt", c.id, v / 1000, "s", True))
        elif c.id == "find.levels":
            for row in f.get("levels") or []:
                if not isinstance(row, dict) or row.get("status") in (None, "") or row.get("ms") is None:
                    continue
                if (v := _number(row.get("ms"))) is not None:
                    out.append(Measure("find", c.id, v / 1000, "s", True,
                                       {"model": str(row.get("model", "")), "level": str(row.get("level", ""))}))
        elif c.id == "find.match_limit":
            if (v := _number(f.get("limit"))) is not None:
                out.append(Measure("match_limit", c.id, v, "", False))
        elif c.id in ("retrieve.move", "retrieve.get"):
            if (v := _number(f.get("objects_per_s"))) is not None:
                out.append(Measure("objects_per_s", c.id, v, "", False))
    return out


STATUS_RANK = {"pass": 0, "skipped": 0, "warn": 1, "error": 2, "fail": 3}


def node_status(report: Report) -> str:
    """The worst status among the checks: pass, warn, error (could not test) or fail."""
    worst = "pass"
    for c in report.checks:
        s = c.status.value
        if STATUS_RANK.get(s, 0) > STATUS_RANK[worst]:
            worst = s
    return worst


def first_problem(report: Report) -> dict[str, str] | None:
    """The first failure (else warning, else check that could not complete), in run order:
    ``{"check", "status", "code", "summary"}``; None when every check passed or was skipped."""
    for wanted in ("fail", "warn", "error"):
        for c in report.checks:
            if c.status.value != wanted:
                continue
            worst = next((f for f in c.findings if f.severity.value == wanted), None)
            if worst is None:
                worst = next((f for f in c.findings if f.severity.value != "info"), None)
            return {"check": c.id, "status": wanted, "code": worst.code if worst else "",
                    "summary": worst.summary if worst else (c.reason or c.summary or "")}
    return None


def echo_rtt_ms(report: Report) -> float | None:
    for c in report.checks:
        if c.id == "association.echo":
            return _number((c.facts or {}).get("rtt_ms"))
    return None
