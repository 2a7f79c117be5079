"""Interoperability: DCMTK's own SCU tools (a second implementation) against the simulator.

The tools are Debian's ``dcmtk`` package. Without it these tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from qrdoctor.simulator import SimulatedPACS
from qrdoctor.simulator.data import Archive

from support.ports import free_port

TIMEOUT = 60


@pytest.fixture(scope="module")
def archive_5000() -> Archive:
    return Archive(studies=5000, seed=5)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, errors="replace",
                          timeout=TIMEOUT)


def findscu(tool, pacs: SimulatedPACS, *keys: str, extra: tuple[str, ...] = ()
            ) -> tuple[int, str, subprocess.CompletedProcess[str]]:
    """(number of pending responses, final status text, process)."""
    args = [tool("findscu"), "-v", "-S", "-aet", "QRDOCTOR", "-aec", pacs.ae_title, *extra]
    for key in keys:
        args += ["-k", key]
    proc = run([*args, pacs.host, str(pacs.port)])
    pending = len(re.findall(r"Find Response: \d+ \(Pending\)", proc.stderr))
    final = re.search(r"Received Final Find Response \(([^)]*)\)", proc.stderr)
    return pending, final.group(1) if final else "", proc


def test_findscu_counts_every_study_of_a_large_archive(dcmtk, sim_pacs_factory,
                                                      archive_5000) -> None:
    # Given a PACS holding 5000 studies
    pacs = sim_pacs_factory(archive=archive_5000)
    # When DCMTK findscu runs a universal Study Root STUDY query
    pending, final, proc = findscu(dcmtk, pacs, "QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                   "PatientName", "StudyDate", "ModalitiesInStudy")
    # Then it receives exactly 5000 matches and Success
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (pending, final) == (5000, "Success")


def test_findscu_sees_the_silent_cap(dcmtk, sim_pacs_factory, archive_5000) -> None:
    pacs = sim_pacs_factory(archive=archive_5000, quirks="silent-cap=500")
    pending, final, proc = findscu(dcmtk, pacs, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert proc.returncode == 0
    assert (pending, final) == (500, "Success")


@pytest.mark.parametrize(("quirk", "final"), [
    ("cap-cancel=25", "Cancel"),
    ("cap-warning=25", "0xb001"),
])
def test_findscu_sees_signalled_caps(dcmtk, sim_pacs_factory, quirk: str, final: str) -> None:
    pacs = sim_pacs_factory(quirks=quirk)
    pending, final_text, _ = findscu(dcmtk, pacs, "QueryRetrieveLevel=STUDY")
    assert pending == 25 and final in final_text


def test_findscu_cancel_is_honoured(dcmtk, sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="slow=0.02")
    pending, final, _ = findscu(dcmtk, pacs, "QueryRetrieveLevel=STUDY", extra=("--cancel", "3"))
    assert final.startswith("Cancel")
    assert pending < pacs.archive.num_studies


def test_findscu_missing_unique_key(dcmtk, sim_pacs) -> None:
    _, final, _ = findscu(dcmtk, sim_pacs, "QueryRetrieveLevel=SERIES", "SeriesInstanceUID")
    assert "DataSetDoesNotMatchSOPClass" in final


def test_findscu_patient_root_with_non_ascii_name(dcmtk, sim_pacs) -> None:
    pending, final, proc = findscu(
        dcmtk, sim_pacs, "QueryRetrieveLevel=PATIENT", "PatientName=M*ller*", "PatientID",
        "SpecificCharacterSet", extra=("-P",))
    assert (pending, final) == (1, "Success")
    assert "ISO_IR 100" in proc.stderr


def test_echoscu_and_called_ae_check(dcmtk, sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="check-called-ae")
    ok = run([dcmtk("echoscu"), "-aet", "QRDOCTOR", "-aec", "SIMPACS", pacs.host,
              str(pacs.port)])
    wrong = run([dcmtk("echoscu"), "-aet", "QRDOCTOR", "-aec", "ANY-SCP", pacs.host,
                 str(pacs.port)])
    assert ok.returncode == 0
    assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stderr


def test_movescu_receives_one_series(dcmtk, sim_pacs_factory, tmp_path) -> None:
    # Given movescu's own store listener registered as destination QRDOCTOR
    store_port = free_port()
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", store_port)})
    series = pacs.archive.series[1]
    # When movescu moves one series to itself
    proc = run([
        dcmtk("movescu"), "-v", "-S", "-aet", "QRDOCTOR", "-aec", pacs.ae_title,
        "-aem", "QRDOCTOR", "--port", str(store_port), "-od", str(tmp_path),
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={series.study.uid}",
        "-k", f"SeriesInstanceUID={series.uid}", pacs.host, str(pacs.port),
    ])
    # Then every instance of the series is written, and the final response is Success
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Received Final Move Response (Success)" in proc.stderr
    files = sorted(os.listdir(tmp_path))
    assert len(files) == series.num_instances
    assert {f.split(".", 1)[1] for f in files} == {i.sop_instance_uid for i in series.instances}


def test_getscu_retrieves_one_series(dcmtk, sim_pacs, tmp_path) -> None:
    series = sim_pacs.archive.series[2]
    proc = run([
        dcmtk("getscu"), "-v", "-S", "-aet", "QRDOCTOR", "-aec", sim_pacs.ae_title,
        "-od", str(tmp_path), "-k", "QueryRetrieveLevel=SERIES",
        "-k", f"StudyInstanceUID={series.study.uid}", "-k", f"SeriesInstanceUID={series.uid}",
        sim_pacs.host, str(sim_pacs.port),
    ])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Number of Completed Suboperations : {series.num_instances}" in proc.stderr
    assert len(os.listdir(tmp_path)) == series.num_instances


def test_getscu_against_no_get(dcmtk, sim_pacs_factory, tmp_path) -> None:
    pacs = sim_pacs_factory(quirks="no-get")
    series = pacs.archive.series[2]
    proc = run([
        dcmtk("getscu"), "-S", "-aet", "QRDOCTOR", "-aec", pacs.ae_title, "-od", str(tmp_path),
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={series.study.uid}",
        "-k", f"SeriesInstanceUID={series.uid}", pacs.host, str(pacs.port),
    ])
    assert proc.returncode != 0
    assert "No adequate Presentation Contexts for sending C-GET" in proc.stderr
    assert os.listdir(tmp_path) == []
