"""The runner loads only the check modules a run can use (issue 14, instant start): without the
option that enables them, the DICOMweb checks are neither imported nor run. This is exact only if
the checks an option enables are those the runner knows of: proved here against the registry.
The later stages' modules are imported in the background while the first checks run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qrdoctor.core import catalog
from qrdoctor.core.registry import DeferredCheck, all_checks, get_check
from qrdoctor.core.runner import EARLY_STAGES, OPTION_ENABLED_STAGES, Runner
from qrdoctor.core.target import Target

from support.fresh import heavy_after_importing


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
    assert heavy_after_importing({e.module for e in catalog.CHECKS if e.stage in EARLY_STAGES}) == []


def test_a_full_run_defers_the_later_stages_and_loads_them_when_needed():
    runner = Runner(Target(host="127.0.0.1", port=9, called_ae="PACS"))
    kinds = {c.id: isinstance(c, DeferredCheck) for c in runner.checks}
    assert kinds == {e.id: e.stage not in EARLY_STAGES for e in catalog.CHECKS if e.stage != "dicomweb"}
    assert not runner.loader.loaded
    deferred = [c for c in runner.checks if isinstance(c, DeferredCheck)]
    # what the catalog knows needs no loading ...
    assert [c.deadline_for(3.0) for c in deferred] == [get_check(c.id).deadline_for(3.0) for c in deferred]
    assert not runner.loader.loaded
    # ... anything else loads every later check once
    assert deferred[0].codes == get_check(deferred[0].id).codes
    assert runner.loader.loaded and all(c.ready() for c in deferred)
    for c in deferred:
        real = get_check(c.id)
        assert c.resolve() is real
        assert (c.title, c.requires, c.after, c.budget, c.stage) == (real.title, real.requires, real.after,
                                                                     real.budget, real.stage)


def test_a_run_of_the_early_checks_alone_loads_nothing_more():
    runner = Runner(Target(host="127.0.0.1", port=9, called_ae="PACS"), only=["association.echo"])
    assert not any(isinstance(c, DeferredCheck) for c in runner.checks)
    assert runner.loader.modules == []


def test_a_module_that_fails_to_import_fails_where_the_check_is_needed():
    from qrdoctor.core.runner import Loader

    entry = catalog.CheckEntry("query", "find.nothing", "Nothing", (), "qrdoctor.checks.find.no_such_module")
    loader = Loader()
    loader.modules = [entry.module]
    deferred = DeferredCheck(entry, loader)
    assert not deferred.ready() and deferred.title == "Nothing"
    with pytest.raises(ModuleNotFoundError):
        deferred.resolve()


# A fresh process: when does each check start, and when were the later checks' modules loaded?
TIMELINE = """
import json, sys, time
from qrdoctor.core import runner as r
from qrdoctor.core.runner import NullObserver, Runner
from qrdoctor.core.target import Target

marks, ended, loads = {}, {}, []
original = r.Loader.load

def load(self):
    if not self.loaded:
        loads.append([time.perf_counter(), sorted(m for m in ("pydicom", "pynetdicom") if m in sys.modules)])
    original(self)
    if len(loads[-1]) == 2:
        loads[-1].append(time.perf_counter())

r.Loader.load = load

class Observer(NullObserver):
    def check_started(self, check):
        marks.setdefault(check.id, time.perf_counter())
    def check_finished(self, check, result):
        ended.setdefault(check.id, time.perf_counter())

report = Runner(Target(host="127.0.0.1", port=int(sys.argv[1]), called_ae=sys.argv[2], timeout=2.0),
                options={"listen_host": "127.0.0.1"}, observer=Observer()).run()
print(json.dumps({"started": marks, "ended": ended, "loads": loads,
                  "results": [[c.id, c.status.value] for c in report.checks]}))
"""


def _timeline(port: int, ae: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", TIMELINE, str(port), ae], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_run_that_ends_in_the_first_stages_never_loads_the_later_checks():
    with socket.socket() as listener:  # accepts, never answers: the association check fails
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        out = _timeline(listener.getsockname()[1], "PACS")
    assert out["loads"] == [], out["loads"]
    assert [cid for cid, _status in out["results"]] == [e.id for e in catalog.CHECKS if e.stage != "dicomweb"]
    assert dict(out["results"])["find.levels"] == "skipped"


def test_the_later_checks_load_between_stages_while_nothing_runs():
    from qrdoctor.simulator import SimulatedPACS

    with SimulatedPACS(port=0, studies=3) as pacs:
        out = _timeline(pacs.port, pacs.ae_title)
    (load,) = out["loads"]
    started_at, libraries_before, done_at = load
    # no DICOM library was imported before the run needed the later checks ...
    assert libraries_before == []
    # ... the first checks had all ended by then, and the later ones started after it
    early = [e.id for e in catalog.CHECKS if e.stage in EARLY_STAGES and e.id in out["ended"]]
    assert early and all(out["ended"][cid] <= started_at for cid in early)
    later = [cid for cid in out["started"] if cid not in early]
    assert later and all(out["started"][cid] >= done_at for cid in later)
    assert "error" not in dict(out["results"]).values(), out["results"]
    assert dict(out["results"])["find.levels"] == "pass", out["results"]
