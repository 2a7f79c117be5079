"""Running checks from tests: a whole run against a port, reading a result and its finding
codes, and ad-hoc checks made of one function for tests of the runner and the views."""

from __future__ import annotations

from qrdoctor.core.model import Report
from qrdoctor.core.registry import Check, Observation
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


class _Done(Observation):
    """What an ad-hoc test check 'observed': nothing to replay, the outcome rides along."""


def adhoc_check(id: str, stage, title: str, fn, *, requires=(), budget: float = 4.0, codes=None) -> Check:
    """A check made of one function (ctx -> Outcome), for tests of the runner and the views.

    Product checks separate observe from conclude; a test that only needs some outcome at some
    point of a run uses this instead. Its codes default to every known code.
    """
    from qrdoctor.core.explain import explanations

    chk = Check(id=id, stage=stage, title=title, requires=tuple(requires), budget=budget,
                codes=tuple(codes if codes is not None else explanations()), observation=_Done)
    box: dict = {}

    def observe(ctx):
        box[ctx.check_id] = fn(ctx)
        return _Done()

    chk.observe(observe)
    chk.conclude(lambda obs, situation: box.pop(id))
    return chk
