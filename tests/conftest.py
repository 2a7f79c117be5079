"""Shared test configuration.

Test support lives in ``tests/support/`` (one module per job; tests import ``support.<module>``).
Fixture modules: ``support.simulator`` (the embedded simulated PACS) and
``support.peer_fixtures`` (real Orthanc and DCMTK servers on loopback). At the end of a full
run, every finding code a check can emit must have been produced by at least one test, and
every fix built must follow the audience rules (:mod:`support.audience_rules`).
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["support.simulator", "support.peer_fixtures"]


def _full_run(session: pytest.Session) -> bool:
    cfg = session.config
    args = [a for a in cfg.args if not a.startswith("-")]
    whole = all(os.path.abspath(a) in (os.path.abspath(cfg.rootpath), os.path.abspath(cfg.rootpath / "tests"))
                for a in args) if args else True
    return whole and not cfg.getoption("keyword") and not cfg.getoption("markexpr") and not cfg.getoption("lf", default=False)


_EMITTED: set[str] = set()  # every finding code built in this test process
_BAD_FIXES: dict[str, str] = {}  # code -> how a fix built for it breaks the audience rules
_FINDING_SPY = pytest.MonkeyPatch()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Record the code of every finding built: checks call ``explain.finding`` at call time."""
    from qrdoctor.core import explain

    from support.audience_rules import audience_problems

    build = explain.finding

    def recording_finding(code, *args, **kwargs):
        _EMITTED.add(code)
        f = build(code, *args, **kwargs)
        for problem in audience_problems(f):
            _BAD_FIXES.setdefault(code, problem)
        return f

    _FINDING_SPY.setattr(explain, "finding", recording_finding)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _FINDING_SPY.undo()
    if exitstatus != 0 or not _full_run(session):
        return
    from qrdoctor.core.registry import all_checks

    declared = {code for c in all_checks() for code in c.codes}
    untested = sorted(declared - _EMITTED)
    problems = [p for _c, p in sorted(_BAD_FIXES.items())]
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in problems if reporter else ():
            reporter.write_line("FAILED: " + line, red=True)
    if untested:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(
                "FAILED: finding codes that no test triggered: " + ", ".join(untested), red=True)
