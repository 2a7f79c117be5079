"""Real servers that hold compressed images: what they propose, convert and answer on retrieve.

Measured on this harness (DCMTK dcmqrscp 3.6.7, Orthanc 1.10.1, pynetdicom 3.0 receivers on
127.0.0.1) with a 2-study corpus (``make_corpus(2, 1, 2, size=16)``: one CT study of two
instances, one MR study), compressed with ``dcmcjpls`` (JPEG-LS Lossless, 1.2.840.10008.1.2.4.80)
or ``dcmcjpeg`` (JPEG Lossless SV1, 1.2.840.10008.1.2.4.70), and a Study Root C-MOVE / C-GET
of the CT study. Receiver profiles (:class:`support.compressed.NegotiationRecorder`):
``uncompressed`` = Implicit + Explicit VR LE; ``all`` = every syntax pynetdicom knows, in
pynetdicom's order (Implicit VR LE first: a pynetdicom acceptor takes the first of *its own*
syntaxes that the proposer listed, not the proposer's first choice); ``compressed-first`` = the
same set with the compressed syntaxes first.

dcmqrscp, default options (files registered with ``dcmqridx``: by default, ``+x=``,
dcmqrscp's own C-STORE SCP rejects a context that offers only JPEG-LS Lossless and accepts
Explicit VR LE next to it; with ``+xt`` it accepts JPEG-LS):

- C-MOVE: one sub-association (calling AE DCMQRSCP) proposing 120 storage SOP classes, one
  context each, always [Explicit VR LE, Explicit VR BE, Implicit VR LE] (``-x=``): the stored
  JPEG-LS / JPEG Lossless syntax is never proposed. Accepted: Implicit VR LE (uncompressed,
  all), Explicit VR LE (compressed-first). No C-STORE is ever sent: dcmqrscp cannot decode
  the file ("unable to convert DICOM file ... from 'JPEG-LS Lossless' transfer syntax to
  'Little Endian Implicit'"), and for every profile the C-MOVE ends 0xA702 (Refused: out of
  resources - unable to perform sub-operations), completed 0, failed 2, warning 0, Failed SOP
  Instance UID List = both instances, after 2 Pending responses. Same for JPEG Lossless SV1.
  So dcmqrscp proposes a format it then fails to produce, and no receiver can help.
- C-GET (we propose each storage class in one context with the profile's syntaxes): dcmqrscp
  accepts Explicit VR LE for every profile (even when JPEG-LS is our first choice) and ends
  the same way: 0xA702, 0/2/0, no C-STORE.

dcmqrscp with ``-xt +xt`` (propose / prefer JPEG-LS Lossless): every one of the 120 contexts
proposes [JPEG-LS Lossless, Explicit VR LE, Explicit VR BE, Implicit VR LE] (the flag is
static, not per file). C-MOVE: uncompressed and all accept Implicit VR LE -> 0xA702, 0/2/0, no
C-STORE (it offers a conversion it cannot perform); compressed-first accepts JPEG-LS ->
Success, 2/0/0, both C-STOREs in JPEG-LS. C-GET: uncompressed -> Explicit VR LE accepted,
0xA702 0/2/0; all and compressed-first -> JPEG-LS accepted, Success 2/0/0, stored as JPEG-LS.

Orthanc, default configuration (``TranscodeDicomProtocol`` true, no ``IngestTranscoding``:
instances stay as uploaded; ``DicomScuPreferredTransferSyntax`` Explicit VR LE):

- C-MOVE: one association (calling AE ORTHANC) with 127 contexts. For the SOP class it sends
  (CT), three contexts in this order: [stored syntax] alone, [Explicit VR LE], [Implicit VR LE,
  Explicit VR BE]; every other SOP class gets only [Explicit VR LE], [Implicit VR LE, Explicit
  VR BE]. uncompressed: the stored-syntax context is rejected (result 4, transfer syntaxes not
  supported) and Orthanc transcodes: both C-STOREs in Explicit VR LE, Success 2/0/0. all and
  compressed-first: the stored-syntax context is accepted and both C-STOREs come in the stored
  syntax (no transcoding), Success 2/0/0. Same for JPEG Lossless SV1.
- C-GET: Orthanc accepts Explicit VR LE for our storage context whatever our order, transcodes
  (log: "C-GET SCP selected transfer syntax 1.2.840.10008.1.2.1 ... DCMTK transcoding"), and
  ends Success 2/0/0 with both C-STOREs in Explicit VR LE, for every profile.

Orthanc with ``"TranscodeDicomProtocol": false``: the same proposals. C-MOVE: uncompressed ->
no C-STORE, final status 0xC000, counts 0/0/0, no Pending; all and compressed-first -> Success
2/0/0 in the stored syntax. C-GET: Explicit VR LE accepted as above, no C-STORE, 0xC000 with
completed 0, failed 1, warning 0 (one failure counted for two instances), every profile.

Neither server returns Available Transfer Syntax UID (0008,3002) in an IMAGE-level C-FIND, and
Orthanc 1.10.1 identifies itself on its associations exactly as DCMTK 3.6.7 does (implementation
class UID 1.2.276.0.7230010.3.0.3.6.7, version name OFFIS_DCMTK_367).

So the issue's expectation "with the default both pass" does not hold for dcmqrscp: by default
it proposes only uncompressed syntaxes for JPEG-LS files and fails whatever the receiver takes;
it passes with qrdoctor's default receiver only when started with ``-xt`` (the default
receiver takes the PACS's first proposed syntax, JPEG-LS). The tests at the end run qrdoctor's
own Store SCP (``--store-accept`` profiles) against these servers and conclude with
checks/retrieve/formats.py from its real record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from qrdoctor.checks.retrieve.conclude import Tally, arrivals, run_evidence
from qrdoctor.checks.retrieve.formats import CONVERSION_FAILED, format_findings
from qrdoctor.checks.retrieve.model import Run, Subject
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Audience, Report, Status
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.dicom.storescp import StoreSCP

from support.audience_rules import audience_problems
from support.compressed import (
    NegotiationRecorder,
    RetrieveResult,
    c_get,
    c_move,
    compress_corpus,
    start_dcmqrscp_with,
    start_orthanc_with,
    transfer_syntax_of,
)
from support.corpus import make_corpus
from support.ports import free_port

SEED = 20261130
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
STORED = {"jpeg-ls": JPEG_LS, "jpeg-lossless": JPEG_LOSSLESS}
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
PROFILES = ("uncompressed", "all", "compressed-first")

DCMQRSCP_VARIANTS = {"default": (), "jpeg-ls": ("-xt", "+xt")}
ORTHANC_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-transcoding": {"TranscodeDicomProtocol": False},
}

Peers = Callable[..., Any]


@pytest.fixture(scope="module")
def corpus() -> list[Dataset]:
    """One CT study (2 instances) and one MR study (2 instances), 16x16 12-bit images."""
    return make_corpus(2, series_per_study=1, instances_per_series=2, seed=SEED, size=16)


@pytest.fixture(scope="module")
def ct_study(corpus: list[Dataset]) -> tuple[str, set[str]]:
    cts = [ds for ds in corpus if ds.SOPClassUID == CT]
    return str(cts[0].StudyInstanceUID), {str(ds.SOPInstanceUID) for ds in cts}


@pytest.fixture(scope="module")
def peers(corpus: list[Dataset], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """``peers(kind, codec="jpeg-ls", variant="default")``: a started dcmqrscp or Orthanc
    holding ``corpus`` compressed with ``codec``, made once per module and killed at its end.
    Its ``store_port`` is the move destination QRDOCTOR's port."""
    files: dict[str, list[Path]] = {}
    made: dict[tuple[str, str, str], Any] = {}

    def get(kind: str, codec: str = "jpeg-ls", variant: str = "default") -> Any:
        key = (kind, codec, variant)
        if key not in made:
            if codec not in files:
                files[codec] = compress_corpus(corpus, tmp_path_factory.mktemp(codec), codec)
            port = free_port()
            if kind == "dcmqrscp":
                server = start_dcmqrscp_with(files[codec], port,
                                             extra_args=DCMQRSCP_VARIANTS[variant])
            else:
                server = start_orthanc_with(files[codec], port,
                                            config=ORTHANC_VARIANTS[variant])
            server.store_port = port
            made[key] = server
        return made[key]

    yield get
    for server in made.values():
        server.kill()


def _move(server: Any, study: str, profile: str) -> tuple[RetrieveResult, NegotiationRecorder]:
    with NegotiationRecorder([CT, MR], profile, port=server.store_port) as recorder:
        result = c_move(server.dicom_port, server.aet, study)
    return result, recorder


def _get(server: Any, study: str, profile: str) -> RetrieveResult:
    return c_get(server.dicom_port, server.aet, study, [CT, MR], profile)


def _counts(result: RetrieveResult) -> tuple[int | None, int | None, int | None, int | None]:
    return result.status, result.completed, result.failed, result.warning


def test_fixtures_hold_the_corpus_compressed(peers: Peers, corpus: list[Dataset]) -> None:
    dcmqrscp = peers("dcmqrscp")
    area_files = sorted(dcmqrscp.area.glob("IDX*.dcm"))
    assert len(area_files) == len(corpus)
    assert {transfer_syntax_of(f) for f in area_files} == {JPEG_LS}
    orthanc = peers("orthanc", "jpeg-lossless")
    assert orthanc.transfer_syntaxes() == {str(ds.SOPInstanceUID): JPEG_LOSSLESS for ds in corpus}


@pytest.mark.parametrize("codec", ["jpeg-ls", "jpeg-lossless"])
@pytest.mark.parametrize("profile", PROFILES)
def test_dcmqrscp_default_proposes_only_uncompressed_and_fails_every_sub_operation(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str, codec: str
) -> None:
    study, uids = ct_study
    result, recorder = _move(peers("dcmqrscp", codec), study, profile)

    [assoc] = recorder.associations
    assert (assoc.calling_ae, assoc.called_ae) == ("DCMQRSCP", "QRDOCTOR")
    classes = [ab for _cid, ab, _ts in assoc.proposed]
    assert len(classes) == len(set(classes)) == 120  # one context per storage SOP class
    assert {tuple(ts) for _cid, _ab, ts in assoc.proposed} == {(EXPLICIT, BIG_ENDIAN, IMPLICIT)}
    expected = EXPLICIT if profile == "compressed-first" else IMPLICIT
    assert assoc.accepted_for(CT) == [expected]
    assert assoc.stores == []  # it never sends: it cannot decode its own file
    assert _counts(result) == (0xA702, 0, 2, 0)
    assert set(result.failed_uids) == uids
    assert result.pending == 2


@pytest.mark.parametrize("profile, accepted, ok", [
    ("uncompressed", IMPLICIT, False),
    ("all", IMPLICIT, False),  # pynetdicom's own order prefers Implicit VR LE
    ("compressed-first", JPEG_LS, True),
])
def test_dcmqrscp_proposing_jpeg_ls_succeeds_only_when_the_receiver_takes_it(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str, accepted: str, ok: bool
) -> None:
    study, uids = ct_study
    result, recorder = _move(peers("dcmqrscp", variant="jpeg-ls"), study, profile)

    [assoc] = recorder.associations
    assert {tuple(ts) for _cid, _ab, ts in assoc.proposed} == {
        (JPEG_LS, EXPLICIT, BIG_ENDIAN, IMPLICIT)}
    assert assoc.accepted_for(CT) == [accepted]
    if ok:
        assert _counts(result) == (0x0000, 2, 0, 0)
        assert {uid for _c, uid, _ts, _s in assoc.stores} == uids
        assert assoc.stored_syntaxes() == {JPEG_LS}
    else:
        assert _counts(result) == (0xA702, 0, 2, 0)
        assert set(result.failed_uids) == uids
        assert assoc.stores == []


@pytest.mark.parametrize("variant, profile, accepted, ok", [
    ("default", "uncompressed", EXPLICIT, False),
    ("default", "all", EXPLICIT, False),
    ("default", "compressed-first", EXPLICIT, False),  # our first choice JPEG-LS is ignored
    ("jpeg-ls", "uncompressed", EXPLICIT, False),
    ("jpeg-ls", "all", JPEG_LS, True),
    ("jpeg-ls", "compressed-first", JPEG_LS, True),
])
def test_dcmqrscp_c_get_of_compressed_files(
    peers: Peers, ct_study: tuple[str, set[str]], variant: str, profile: str, accepted: str,
    ok: bool
) -> None:
    study, uids = ct_study
    result = _get(peers("dcmqrscp", variant=variant), study, profile)

    assoc = result.association
    assert assoc is not None
    assert assoc.accepted_for(CT) == [accepted]
    if ok:
        assert _counts(result) == (0x0000, 2, 0, 0)
        assert assoc.stored_syntaxes() == {JPEG_LS}
    else:
        assert _counts(result) == (0xA702, 0, 2, 0)
        assert set(result.failed_uids) == uids
        assert assoc.stores == []


@pytest.mark.parametrize("codec", ["jpeg-ls", "jpeg-lossless"])
@pytest.mark.parametrize("profile", PROFILES)
def test_orthanc_proposes_the_stored_syntax_alone_and_transcodes_when_refused(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str, codec: str
) -> None:
    study, uids = ct_study
    stored = STORED[codec]
    result, recorder = _move(peers("orthanc", codec), study, profile)

    [assoc] = recorder.associations
    assert (assoc.calling_ae, assoc.called_ae) == ("ORTHANC", "QRDOCTOR")
    assert assoc.proposed[:3] == [(1, CT, [stored]), (3, CT, [EXPLICIT]),
                                  (5, CT, [IMPLICIT, BIG_ENDIAN])]
    assert assoc.proposed_for(MR) == [[EXPLICIT], [IMPLICIT, BIG_ENDIAN]]
    assert [ab for _cid, ab, ts in assoc.proposed if stored in ts] == [CT]
    assert _counts(result) == (0x0000, 2, 0, 0)
    assert {uid for _c, uid, _ts, _s in assoc.stores} == uids
    if profile == "uncompressed":
        assert (1, CT, 4) in assoc.rejected  # transfer syntaxes not supported
        assert assoc.stored_syntaxes() == {EXPLICIT}  # transcoded
    else:
        assert (1, CT, stored) in assoc.accepted
        assert assoc.stored_syntaxes() == {stored}  # sent as stored


@pytest.mark.parametrize("profile", PROFILES)
def test_orthanc_c_get_accepts_explicit_vr_le_and_transcodes(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str
) -> None:
    study, uids = ct_study
    result = _get(peers("orthanc"), study, profile)

    assoc = result.association
    assert assoc is not None
    assert assoc.accepted_for(CT) == [EXPLICIT]
    assert _counts(result) == (0x0000, 2, 0, 0)
    assert {uid for _c, uid, _ts, _s in assoc.stores} == uids
    assert assoc.stored_syntaxes() == {EXPLICIT}


@pytest.mark.parametrize("profile", PROFILES)
def test_orthanc_without_transcoding_fails_the_move_when_the_stored_syntax_is_refused(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str
) -> None:
    study, _uids = ct_study
    result, recorder = _move(peers("orthanc", variant="no-transcoding"), study, profile)

    [assoc] = recorder.associations
    assert assoc.proposed[:3] == [(1, CT, [JPEG_LS]), (3, CT, [EXPLICIT]),
                                  (5, CT, [IMPLICIT, BIG_ENDIAN])]
    if profile == "uncompressed":
        assert (1, CT, 4) in assoc.rejected
        assert assoc.stores == []
        assert _counts(result) == (0xC000, 0, 0, 0)
        assert result.pending == 0
    else:
        assert _counts(result) == (0x0000, 2, 0, 0)
        assert assoc.stored_syntaxes() == {JPEG_LS}


@pytest.mark.parametrize("profile", PROFILES)
def test_orthanc_without_transcoding_fails_every_c_get(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str
) -> None:
    study, _uids = ct_study
    result = _get(peers("orthanc", variant="no-transcoding"), study, profile)

    assoc = result.association
    assert assoc is not None
    assert assoc.accepted_for(CT) == [EXPLICIT]
    assert assoc.stores == []
    assert _counts(result) == (0xC000, 0, 1, 0)


# -- qrdoctor's own receiver and format diagnosis against the same servers --------------------


def _image_level_syntaxes(server: Any, study: str) -> list[str]:
    """What an IMAGE-level C-FIND returns for Available Transfer Syntax UID (0008,3002)."""
    ae = AE(ae_title="QRDOCTOR")
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet)
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = ""
    ds.SOPInstanceUID = ""
    ds.AvailableTransferSyntaxUID = ""
    found: list[str] = []
    try:
        for status, identifier in assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind):
            if status is not None and status.Status in (0xFF00, 0xFF01) and identifier is not None:
                value = identifier.get("AvailableTransferSyntaxUID", "")
                found += [str(v) for v in (value if isinstance(value, list) else [value]) if v]
    finally:
        assoc.release()
    return found


def _diagnose(server: Any, study: str, uids: set[str], profile: str) -> tuple[list, Any]:
    """A C-MOVE of ``study`` to qrdoctor's Store SCP with ``profile``, concluded by
    checks/retrieve/formats.py from the receiver's real record and the real final response."""
    with StoreSCP("QRDOCTOR", "127.0.0.1", server.store_port, profile=profile) as scp:
        result = c_move(server.dicom_port, server.aet, study)
        got = scp.receiver.uids()
        scp.stop()
        record = scp.record()
    run = Run(operation="C-MOVE", stall_s=30.0, deadline_s=60.0, status=result.status, completed=result.completed,
              failed=result.failed, warning=result.warning, pending=result.pending,
              failed_uids=result.failed_uids, failed_uid_count=len(result.failed_uids))
    subject = Subject(level="STUDY", study_uid=study, expected=len(uids), expected_source="IMAGE-level C-FIND",
                      sop_classes=[CT], available_syntaxes=_image_level_syntaxes(server, study))
    tally = Tally(len(uids), arrivals(sorted(uids), got))
    s = Situation(target=Target("127.0.0.1", server.dicom_port, server.aet, calling_ae="QRDOCTOR",
                                move_ae="QRDOCTOR"))
    findings = format_findings(s, run, tally, subject, record, run_evidence(run))
    for f in findings:
        assert audience_problems(f) == []
    return findings, record


def _part(f: Any, audience: Audience) -> str:
    return " ".join(a.text for a in f.actions if a.audience is audience)


def test_neither_server_returns_the_available_transfer_syntax(peers: Peers, ct_study: tuple[str, set[str]]) -> None:
    study, _uids = ct_study
    assert _image_level_syntaxes(peers("dcmqrscp"), study) == []
    assert _image_level_syntaxes(peers("orthanc"), study) == []


@pytest.mark.parametrize("profile", ["all", "uncompressed"])
def test_qrdoctor_diagnoses_dcmqrscp_default_as_a_format_it_could_not_produce(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str
) -> None:
    study, uids = ct_study
    [f], record = _diagnose(peers("dcmqrscp"), study, uids, profile)

    assert f.code == CONVERSION_FAILED
    [inbound] = record.inbound
    assert inbound.association is not None and inbound.association.stores_total == 0
    # dcmqrscp 3.6.7 does not return Available Transfer Syntax UID and proposes only
    # uncompressed syntaxes: qrdoctor cannot name JPEG-LS, and says so
    assert "cannot tell which format" in f.summary
    assert "Explicit VR Little Endian (1.2.840.10008.1.2.1)" in f.summary
    assert "Ask the PACS administrator which format" in _part(f, Audience.WORKSTATION)


def test_qrdoctor_diagnoses_dcmqrscp_proposing_jpeg_ls_to_an_uncompressed_receiver(
    peers: Peers, ct_study: tuple[str, set[str]]
) -> None:
    study, uids = ct_study
    [f], _record = _diagnose(peers("dcmqrscp", variant="jpeg-ls"), study, uids, "uncompressed")

    assert f.code == CONVERSION_FAILED
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in f.summary
    assert "-xt" in _part(f, Audience.PACS)  # dcmqrscp identifies itself as DCMTK
    assert "--store-accept uncompressed,jpeg-ls" in _part(f, Audience.TESTER)


def test_qrdoctor_receiver_takes_jpeg_ls_from_dcmqrscp_by_default(
    peers: Peers, ct_study: tuple[str, set[str]]
) -> None:
    study, uids = ct_study
    findings, record = _diagnose(peers("dcmqrscp", variant="jpeg-ls"), study, uids, "all")

    assert findings == []
    [inbound] = record.inbound
    assert inbound.association is not None
    assert {(t.transfer_syntax, t.count) for t in inbound.association.tally} == {(JPEG_LS, 2)}


@pytest.mark.parametrize("profile", ["all", "uncompressed"])
def test_qrdoctor_receives_from_orthanc_whatever_the_profile(
    peers: Peers, ct_study: tuple[str, set[str]], profile: str
) -> None:
    study, uids = ct_study
    findings, record = _diagnose(peers("orthanc"), study, uids, profile)

    assert findings == []
    [inbound] = record.inbound
    assert inbound.association is not None
    expected = EXPLICIT if profile == "uncompressed" else JPEG_LS  # transcoded, or as stored
    assert {(t.transfer_syntax, t.count) for t in inbound.association.tally} == {(expected, 2)}


def test_qrdoctor_diagnoses_orthanc_without_transcoding(peers: Peers, ct_study: tuple[str, set[str]]) -> None:
    study, uids = ct_study
    [f], record = _diagnose(peers("orthanc", variant="no-transcoding"), study, uids, "uncompressed")

    assert f.code == CONVERSION_FAILED
    assert "0xC000" in f.summary and "JPEG-LS Lossless Image Compression" in f.summary
    assert "TranscodeDicomProtocol" in _part(f, Audience.PACS)
    # Orthanc 1.10.1 sends DCMTK's implementation class UID and version name: the dcmqrscp
    # option is named only for the case that the PACS is dcmqrscp
    assert "if the PACS is DCMTK's dcmqrscp" in _part(f, Audience.PACS)


# -- the whole run: qrdoctor's retrieve checks with --store-accept against the same servers ----

JPEG_LS_NAME = "JPEG-LS Lossless Image Compression"


def _run(server: Any, store_accept: str = "all") -> Report:
    target = Target("127.0.0.1", server.dicom_port, server.aet, store_port=server.store_port, timeout=5.0)
    return Runner(target, only=["retrieve.move", "retrieve.get"],
                  options={"listen_host": "127.0.0.1", "store_accept": store_accept}).run()


def _move_result(report: Report) -> Any:
    return next(c for c in report.checks if c.id == "retrieve.move")


@pytest.mark.parametrize("store_accept", ["all", "uncompressed"])
def test_a_run_against_orthanc_passes_whatever_the_receiver_accepts(peers: Peers, store_accept: str) -> None:
    r = _move_result(_run(peers("orthanc"), store_accept))

    assert r.status is Status.PASS, (r.summary, r.findings)
    assert r.facts["failed"] == 0 and r.facts["received"] == r.facts["expected"]
    stored_as = "Explicit VR Little Endian" if store_accept == "uncompressed" else JPEG_LS_NAME
    assert r.facts["transfer_syntaxes"] == {stored_as: r.facts["received"]}  # transcoded, or as stored


def test_a_default_run_against_dcmqrscp_proposing_jpeg_ls_passes(peers: Peers) -> None:
    r = _move_result(_run(peers("dcmqrscp", variant="jpeg-ls")))

    assert r.status is Status.PASS, (r.summary, r.findings)
    assert r.facts["transfer_syntaxes"] == {JPEG_LS_NAME: r.facts["received"]}


@pytest.mark.parametrize("variant, store_accept, named", [
    ("default", "all", "cannot tell which format"),
    ("jpeg-ls", "uncompressed", "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)"),
])
def test_a_run_against_dcmqrscp_that_cannot_convert_names_the_format_problem(
    peers: Peers, variant: str, store_accept: str, named: str
) -> None:
    report = _run(peers("dcmqrscp", variant=variant), store_accept)

    retrieves = [c for c in report.checks if c.id.startswith("retrieve.")]
    assert len(retrieves) == 2
    for r in retrieves:  # C-GET: 0xA702 without a C-STORE too
        assert {f.code for f in r.findings} == {CONVERSION_FAILED}, (r.id, r.findings)
    move = _move_result(report).findings[0]
    assert named in move.summary
    assert "the storage SOP classes of modality CT" in move.summary  # dcmqrscp returns no SOP Class UID
    # On C-GET qrdoctor offered the classes it guessed from the modality: an image of another
    # class fails the same way, and the finding says so; on C-MOVE the PACS chose the classes
    get = next(c for c in retrieves if c.id == "retrieve.get").findings[0]
    assert "or the images have a SOP class qrdoctor did not offer" in get.summary
    assert "did not offer" not in move.summary


def test_a_run_against_orthanc_without_transcoding_names_the_stored_format(peers: Peers) -> None:
    report = _run(peers("orthanc", variant="no-transcoding"), "uncompressed")

    retrieves = [c for c in report.checks if c.id.startswith("retrieve.")]
    assert len(retrieves) == 2
    for r in retrieves:  # C-MOVE 0xC000 with nothing counted, C-GET 0xC000 with one failure
        assert {f.code for f in r.findings} == {CONVERSION_FAILED}, (r.id, r.findings)
    move = _move_result(report).findings[0]
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in move.summary
    # Orthanc names the SOP classes in its C-FIND: the C-GET offered them, nothing to hedge
    get = next(c for c in retrieves if c.id == "retrieve.get").findings[0]
    assert "did not offer" not in get.summary and "the PACS offered a format it could not produce" in get.summary
    assert any("TranscodeDicomProtocol" in a.text for a in move.actions)
