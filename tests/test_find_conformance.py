"""find.conformance (issue 12, "Conformance of the answers"): duplicate rows per unique key,
rows that do not fit their level, and text whose character set is missing or wrong -- seen on
the simulator's study-row-per-image quirk and on hostile peers written at the PDU/DIMSE level,
and silent on real Orthanc and dcmqrscp."""

from __future__ import annotations

import struct
from io import BytesIO

from pydicom.filereader import read_dataset
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from qrdoctor.checks.find.conformance import ConformanceObservation, LevelShape
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Severity, Status
from qrdoctor.core.registry import get_check
from qrdoctor.core.target import Target

from support.hostile import (
    C_ECHO_RQ,
    C_FIND_RQ,
    Script,
    accept,
    by_command,
    echo_rsp,
    find_answers,
    hostile_peer,
)
from support.run import codes, result, run

CHECK = "find.conformance"
AE = "HOSTILE"
STUDY_ONLY = [str(Verification), str(StudyRootQueryRetrieveInformationModelFind),
              str(StudyRootQueryRetrieveInformationModelMove)]


# -- identifiers as raw Implicit VR Little Endian bytes ------------------------------------------


def element(tag: int, value: bytes, pad: bytes = b" ") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def row(level: str = "STUDY", *, uid: bytes | None = b"1.2.3.1", name: bytes = b"DOE^JANE",
        charset: bytes | None = None, extra: dict[int, bytes] | None = None) -> bytes:
    """A STUDY-level identifier in ascending tag order, built byte by byte."""
    items = {0x00080052: level.encode(), 0x00100010: name, 0x00100020: b"P1", 0x00080020: b"20200101"}
    if charset is not None:
        items[0x00080005] = charset
    if uid is not None:
        items[0x0020000D] = uid
    items |= extra or {}
    return b"".join(element(tag, value, b"\x00" if tag in (0x0020000D, 0x00080018) else b" ")
                    for tag, value in sorted(items.items()))


def by_level(answers: dict[str, list[bytes]]):
    """A C-FIND reply chosen by the request's Query/Retrieve Level; other levels: no match."""
    def reply(rq):
        level = str(read_dataset(BytesIO(rq.dataset), True, True).get("QueryRetrieveLevel", ""))
        return find_answers(answers.get(level, []))(rq)
    return reply


def run_conformance(answers: dict[str, list[bytes]]):
    script = lambda n: Script(associate=accept(only=STUDY_ONLY), messages=[],  # noqa: E731
                              then=by_command({C_ECHO_RQ: echo_rsp(), C_FIND_RQ: by_level(answers)}))
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae=AE, only=[CHECK], timeout=2.0)
    assert not peer.errors, peer.errors
    assert result(report, "find.levels").status is not Status.ERROR
    return report


def finding(report, code: str):
    return next(f for f in result(report, CHECK).findings if f.code == code)


# -- unique keys ---------------------------------------------------------------------------------


def test_one_study_row_per_image_on_the_simulator_is_a_duplicate_rows_warning(sim_pacs_factory):
    # Given the simulator answering a STUDY-level C-FIND with one row per image
    pacs = sim_pacs_factory(quirks="study-row-per-image")
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    # Then find.conformance counts the rows against the distinct Study Instance UIDs
    assert codes(report, CHECK) == {"find-duplicate-rows"}
    f = finding(report, "find-duplicate-rows")
    assert f.severity is Severity.WARN and f.evidence["unique_key"] == "StudyInstanceUID"
    first = f.evidence["levels"][0]
    assert first["level"] == "STUDY" and first["rows"] == 25 and first["distinct"] < first["rows"]
    assert {x["model"] for x in f.evidence["levels"]} == {"study_root", "patient_root"}
    assert "PACS vendor" in f.fix and "--" not in f.fix
    # Series and images are answered once each: only the STUDY level is reported
    assert {x["level"] for x in f.evidence["levels"]} == {"STUDY"}


def test_the_simulator_without_the_quirk_is_silent(sim_pacs_factory):
    pacs = sim_pacs_factory()
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    assert result(report, CHECK).status is Status.PASS and codes(report, CHECK) == set()


def test_default_orthanc_answers_conform(orthanc):
    report = run(orthanc.dicom_port, called_ae=orthanc.aet, only=[CHECK])
    check = result(report, CHECK)
    assert check.status is Status.PASS, [f.summary for f in check.findings]
    assert all(x["rows"] == x["distinct"] for x in check.facts["levels"])
    assert any(x["level"] == "STUDY" and x["rows"] >= 5 for x in check.facts["levels"])


def test_dcmqrscp_answers_conform(dcmqrscp):
    report = run(dcmqrscp.port, called_ae=dcmqrscp.aet, only=[CHECK])
    check = result(report, CHECK)
    assert check.status is Status.PASS, [f.summary for f in check.findings]
    assert all(x["rows"] == x["distinct"] for x in check.facts["levels"])


def test_three_rows_for_one_study_on_a_hostile_peer():
    report = run_conformance({"STUDY": [row(), row(), row(), row(uid=b"1.2.3.2")]})
    f = finding(report, "find-duplicate-rows")
    assert f.evidence["levels"] == [{"model": "study_root", "level": "STUDY", "rows": 4, "distinct": 2}]
    assert "4 rows" in f.summary and "2 distinct" in f.summary


# -- rows that do not fit their level -------------------------------------------------------------


def test_wrong_level_missing_unique_key_and_image_keys_in_a_study_answer():
    sop = {0x00080018: b"1.2.3.1.1.1"}
    report = run_conformance({"STUDY": [row("IMAGE", extra=sop), row(uid=b"1.2.3.2"), row(uid=None)]})
    f = finding(report, "find-level-nonconformant")
    assert f.severity is Severity.WARN
    assert f.evidence["other_levels"] == {"IMAGE": 1}
    assert f.evidence["without_unique_key"] == 1
    assert f.evidence["lower_level_keys"] == ["SOPInstanceUID"]
    assert "'IMAGE' instead of 'STUDY'" in f.summary and "StudyInstanceUID" in f.summary
    assert "find-duplicate-rows" not in codes(report, CHECK)


def test_rows_without_a_query_retrieve_level():
    no_level = row()[len(element(0x00080052, b"STUDY")):]  # the first element is (0008,0052)
    report = run_conformance({"STUDY": [no_level, row(uid=b"1.2.3.2")]})
    f = finding(report, "find-level-nonconformant")
    assert f.evidence["other_levels"] == {"": 1}
    assert "no Query/Retrieve Level (0008,0052)" in f.summary


# -- character sets -------------------------------------------------------------------------------


def test_latin1_bytes_without_specific_character_set():
    report = run_conformance({"STUDY": [row(name=b"M\xdcLLER^J\xdcRGEN"), row(uid=b"1.2.3.2")]})
    f = finding(report, "find-charset-missing")
    assert f.severity is Severity.WARN
    [level] = f.evidence["levels"]
    assert level["rows_without_charset"] == 1 and level["keys"] == ["PatientName"]
    assert "without Specific Character Set (0008,0005)" in f.summary
    assert "LLER" not in str(f.evidence) and "LLER" not in f.summary  # no patient data


def test_bytes_invalid_in_the_declared_character_set():
    report = run_conformance({"STUDY": [row(name=b"M\xdcLLER^J", charset=b"ISO_IR 192"),
                                        row(uid=b"1.2.3.2", charset=b"ISO_IR 192")]})
    f = finding(report, "find-charset-missing")
    [level] = f.evidence["levels"]
    assert level["declared"] == ["ISO_IR 192"] and level["rows_with_invalid_bytes"] == 1
    assert "declared 'ISO_IR 192' but held bytes that are not valid in it" in f.summary


def test_declared_latin1_and_utf8_text_that_fits_is_silent():
    report = run_conformance({"STUDY": [row(name=b"M\xdcLLER^J", charset=b"ISO_IR 100"),
                                        row(uid=b"1.2.3.2", name="MÜLLER^J".encode(), charset=b"ISO_IR 192")]})
    assert result(report, CHECK).status is Status.PASS, [f.summary for f in result(report, CHECK).findings]


# -- conclude alone --------------------------------------------------------------------------------


def test_conclude_names_an_unknown_character_set_term():
    shape = LevelShape(model="study_root", level="STUDY", rows=2, unique_key="StudyInstanceUID", distinct=2,
                       charsets=["ISO_IR 999"], unknown_charsets=["ISO_IR 999"])
    out = get_check(CHECK).conclude_fn(ConformanceObservation(levels=[shape]),
                                       Situation(target=Target("127.0.0.1", 104, "PACS")))
    [f] = out.findings
    assert f.code == "find-charset-missing" and "'ISO_IR 999'" in f.summary and "Defined Term" in f.summary


def test_names_without_specific_character_set_on_the_simulator(sim_pacs_factory):
    pacs = sim_pacs_factory(quirks="charset-missing")
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    assert codes(report, CHECK) == {"find-charset-missing"}
    f = finding(report, "find-charset-missing")
    patient = next(x for x in f.evidence["levels"] if x["level"] == "PATIENT")
    assert patient["rows_without_charset"] >= 2 and patient["keys"] == ["PatientName"]
