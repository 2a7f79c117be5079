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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

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
