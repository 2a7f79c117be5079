"""Shared test configuration.

Fixture modules: ``sim_fixtures`` (the embedded simulated PACS) and ``peer_fixtures`` (real
Orthanc and DCMTK servers on loopback). At the end of a full run, every finding code a check
can emit must have been produced by at least one test.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [name for name in ("sim_fixtures", "peer_fixtures")
                  if os.path.exists(os.path.join(os.path.dirname(__file__), f"{name}.py"))]


def _full_run(session: pytest.Session) -> bool:
    cfg = session.config
    args = [a for a in cfg.args if not a.startswith("-")]
    whole = all(os.path.abspath(a) in (os.path.abspath(cfg.rootpath), os.path.abspath(cfg.rootpath / "tests"))
                for a in args) if args else True
    return whole and not cfg.getoption("keyword") and not cfg.getoption("markexpr") and not cfg.getoption("lf", default=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus != 0 or not _full_run(session):
        return
    from qrdoctor.core.explain import EMITTED
    from qrdoctor.core.registry import all_checks

    declared = {code for c in all_checks() for code in c.codes}
    untested = sorted(declared - EMITTED)
    if untested:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(
                "FAILED: finding codes that no test triggered: " + ", ".join(untested), red=True)
