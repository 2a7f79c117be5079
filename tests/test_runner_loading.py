"""The runner loads only the check modules a run can use (issue 14, instant start): without the
option that enables them, the DICOMweb checks are neither imported nor run. This is exact only if
the checks an option enables are those the runner knows of: proved here against the registry."""

from __future__ import annotations

from qrdoctor.core.registry import all_checks
from qrdoctor.core.runner import OPTION_ENABLED_STAGES, Runner
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
