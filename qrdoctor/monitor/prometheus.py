"""``--prometheus FILE``: the Prometheus text exposition format, for node_exporter's textfile
collector (``--collector.textfile.directory``; the file name must end in ``.prom``).

Written with ``prometheus_client`` (a :class:`CollectorRegistry` and ``write_to_textfile``, which
writes a temporary file and renames it: the collector never reads half a file). Every series
carries the labels ``node`` (the inventory or profile name, or ``AE@host:port``), ``ae`` (the
PACS's AE title), ``host`` and ``port``; per-check series add ``check``.

Metrics (gauges):

- ``qrdoctor_check_status{..., check, status}``: one series per check and status (``pass``,
  ``warn``, ``fail``, ``error``, ``skipped``), 1 for the status the check ended with and 0 for
  the others -- the Prometheus convention for a state (alert on
  ``qrdoctor_check_status{status="fail"} == 1``);
- ``qrdoctor_check_duration_seconds{..., check}``;
- ``qrdoctor_node_exit_code{...}``: the exit status ``qrdoctor check`` gives (0, 1, 3);
- ``qrdoctor_tcp_connect_seconds``, ``qrdoctor_association_seconds``,
  ``qrdoctor_echo_rtt_seconds``, ``qrdoctor_find_seconds{..., model, level}``,
  ``qrdoctor_match_limit`` (only when a cap was proven), ``qrdoctor_retrieve_objects_per_second``
  -- where they come from: :mod:`qrdoctor.monitor.metrics`; each with ``check``;
- ``qrdoctor_last_run_timestamp_seconds{...}``: when the run started (Unix time), and
  ``qrdoctor_run_duration_seconds{...}``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from qrdoctor.core.model import Report, Status
from qrdoctor.monitor.metrics import measures

NODE_LABELS = ("node", "ae", "host", "port")
CHECK_LABELS = (*NODE_LABELS, "check")

_MEASURE_METRICS = {
    "tcp_connect": ("qrdoctor_tcp_connect_seconds", "TCP connect time to the PACS", ()),
    "association": ("qrdoctor_association_seconds",
                    "time from opening the connection to the answer to the association request", ()),
    "echo_rtt": ("qrdoctor_echo_rtt_seconds", "C-ECHO round trip", ()),
    "find": ("qrdoctor_find_seconds", "one C-FIND, request to final response (or to the end after qrdoctor's C-CANCEL), per model and level",
             ("model", "level")),
    "match_limit": ("qrdoctor_match_limit", "the cap on C-FIND matches the PACS was proven to apply", ()),
    "objects_per_s": ("qrdoctor_retrieve_objects_per_second", "objects received per second in a retrieve", ()),
}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _value(text: str) -> str:
    """A label value that can be written as UTF-8: undecodable bytes (kept by Python as lone
    surrogates) become U+FFFD (prometheus_client escapes the rest)."""
    return _SURROGATE.sub("\ufffd", str(text))


def _started(report: Report) -> float | None:
    try:
        return dt.datetime.fromisoformat(report.started_at).timestamp()
    except (TypeError, ValueError):
        return None


def registry_for(runs: Iterable[tuple[str, Report]]):
    """A CollectorRegistry with the metrics of each (node name, report)."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    status = Gauge("qrdoctor_check_status", "1 for the status each check ended with, 0 for the others",
                   [*CHECK_LABELS, "status"], registry=reg)
    duration = Gauge("qrdoctor_check_duration_seconds", "how long each check ran", CHECK_LABELS, registry=reg)
    exit_code = Gauge("qrdoctor_node_exit_code", "exit status of the run: 0 no check failed, 1 a check "
                      "failed, 3 qrdoctor could not complete a check", NODE_LABELS, registry=reg)
    last_run = Gauge("qrdoctor_last_run_timestamp_seconds", "when the run started (Unix time)", NODE_LABELS,
                     registry=reg)
    run_duration = Gauge("qrdoctor_run_duration_seconds", "how long the whole run took", NODE_LABELS, registry=reg)
    gauges = {name: Gauge(metric, doc, [*CHECK_LABELS, *extra], registry=reg)
              for name, (metric, doc, extra) in _MEASURE_METRICS.items()}
    for node, report in runs:
        t = report.target
        base = {"node": _value(node), "ae": _value(t.called_ae), "host": _value(t.host), "port": str(t.port)}
        for c in report.checks:
            for s in Status:
                status.labels(**base, check=c.id, status=s.value).set(1 if c.status == s else 0)
            duration.labels(**base, check=c.id).set(c.duration_s)
        exit_code.labels(**base).set(int(report.exit_code))
        started = _started(report)
        if started is not None:
            last_run.labels(**base).set(started)
        run_duration.labels(**base).set(report.duration_s)
        for m in measures(report):
            gauges[m.name].labels(**base, check=m.check, **m.labels).set(m.value)
    return reg


def write_metrics(path: str, runs: Iterable[tuple[str, Report]]) -> None:
    """Write the metrics file atomically (a temporary file renamed into place)."""
    from prometheus_client import write_to_textfile

    write_to_textfile(path, registry_for(runs))
