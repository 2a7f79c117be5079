"""Running checks directly from tests."""

from __future__ import annotations

from qrdoctor.core.model import Report
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target


def run(port: int, called_ae: str = "FAULTSCP", only=None, host: str = "127.0.0.1", **target_options) -> Report:
    target_options.setdefault("timeout", 3.0)
    target = Target(host=host, port=port, called_ae=called_ae, **target_options)
    return Runner(target, only=only).run()


def result(report: Report, check_id: str):
    return next(c for c in report.checks if c.id == check_id)


def codes(report: Report, check_id: str | None = None) -> set[str]:
    return {f.code for c in report.checks if check_id in (None, c.id) for f in c.findings}
