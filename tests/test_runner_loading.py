"""The runner loads only the check modules a run can use (issue 14, instant start): without the
option that enables them, the DICOMweb checks are neither imported nor run. This is exact only if
the checks an option enables are those the runner knows of: proved here against the registry.
The later stages' modules are imported in the background while the first checks run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from qrdoctor.core import catalog
from qrdoctor.core.registry import DeferredCheck, all_checks, get_check
from qrdoctor.core.runner import EARLY_STAGES, OPTION_ENABLED_STAGES, Runner
from qrdoctor.core.target import Target


def test_every_check_an_option_enables_is_in_a_stage_the_runner_skips_without_it():
    enabled_by = {(c.stage.label, c.enabled_by) for c in all_checks() if c.enabled_by is not None}
    assert enabled_by == set(OPTION_ENABLED_STAGES.items())
    in_those_stages = [c.id for c in all_checks() if c.stage.label in OPTION_ENABLED_STAGES]
    assert all(c.enabled_by for c in all_checks() if c.id in in_those_stages)


def test_the_runner_selects_the_same_checks_as_before():
    target = Target(host="127.0.0.1", port=9, called_ae="PACS")
    plain = [c.id for c in Runner(target).checks]
    assert plain == [c.id for c in all_checks() if c.enabled_by is None]
    with_url = [c.id for c in Runner(target, options={"dicomweb": "http://127.0.0.1:9/"}).checks]
    assert with_url == [c.id for c in all_checks()]
    assert [c.id for c in Runner(target, options={"dicomweb": None}).checks] == plain


def test_a_dicomweb_only_runner_selects_the_dicomweb_checks():
    url = "http://127.0.0.1:9/dicom-web/"
    runner = Runner(Target.dicomweb_only(url), options={"dicomweb": url})
    assert [c.id for c in runner.checks] == [c.id for c in all_checks() if c.stage.label == "dicomweb"]


# -- staged loading: the later stages' modules are imported while the first checks run ----------

ROOT = Path(__file__).resolve().parent.parent


def test_the_early_stages_modules_import_no_dicom_library():
    """What the runner loads before the first TCP connection must be quick to load."""
    modules = sorted({e.module for e in catalog.CHECKS if e.stage in EARLY_STAGES})
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in ('pynetdicom', 'pydicom', 'httpx', 'numpy') if m in sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_a_full_run_defers_the_later_stages_and_loads_them_in_the_background():
    runner = Runner(Target(host="127.0.0.1", port=9, called_ae="PACS"))
    kinds = {c.id: isinstance(c, DeferredCheck) for c in runner.checks}
    assert kinds == {e.id: e.stage not in EARLY_STAGES for e in catalog.CHECKS if e.stage != "dicomweb"}
    runner.loader.thread.join(timeout=60)
    for c in runner.checks:
        if isinstance(c, DeferredCheck):
            assert c.ready()
            assert c.resolve() is get_check(c.id)
            assert (c.title, c.requires, c.budget, c.codes) == (
                get_check(c.id).title, get_check(c.id).requires, get_check(c.id).budget, get_check(c.id).codes)


def test_a_run_of_the_early_checks_alone_starts_no_loader():
    runner = Runner(Target(host="127.0.0.1", port=9, called_ae="PACS"), only=["association.echo"])
    assert not any(isinstance(c, DeferredCheck) for c in runner.checks)
    assert runner.loader.thread is None


def test_a_module_that_fails_to_import_fails_where_the_check_is_needed():
    entry = catalog.CheckEntry("query", "find.nothing", "Nothing", (), "qrdoctor.checks.find.no_such_module")
    done = threading.Event()
    done.set()
    deferred = DeferredCheck(entry, done)
    assert deferred.ready() and deferred.title == "Nothing"
    with pytest.raises(ModuleNotFoundError):
        deferred.resolve()


# A fresh process: the first TCP connection is made while the later checks' modules load.
FIRST_CONNECTION = """
import json, sys, threading, time
from qrdoctor.core import runner as r
from qrdoctor.core.runner import NullObserver, Runner
from qrdoctor.core.target import Target

marks = {}
loaded_at = {}
original = r._Loader._run

def recording(self, events):
    for module, event in events:
        threading.Thread(target=lambda m=module, e=event: (e.wait(), loaded_at.setdefault(m, time.perf_counter())),
                         daemon=True).start()
    original(self, events)

r._Loader._run = recording

class Observer(NullObserver):
    def check_started(self, check):
        marks.setdefault(check.id, time.perf_counter())

report = Runner(Target(host="127.0.0.1", port=int(sys.argv[1]), called_ae="PACS", timeout=2.0),
                observer=Observer()).run()
time.sleep(0.2)
print(json.dumps({"tcp_started": marks["network.tcp"], "first_module": min(loaded_at.values()),
                  "results": [[c.id, c.status.value] for c in report.checks]}))
"""


def test_the_first_connection_does_not_wait_for_the_later_checks_modules():
    with socket.socket() as listener:  # accepts, never answers: the run waits
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc = subprocess.run([sys.executable, "-c", FIRST_CONNECTION, str(port)], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # network.tcp started before the first of the later stages' modules was in ...
    assert out["tcp_started"] < out["first_module"], out
    # ... and the report is the whole run's, in the declared order
    assert [cid for cid, _status in out["results"]] == [e.id for e in catalog.CHECKS if e.stage != "dicomweb"]
