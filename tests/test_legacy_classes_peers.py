"""Priors stored under retired storage SOP classes, retrieved from real servers.

A long-term archive still holds studies whose images carry a storage SOP class the standard has
since retired: the 1990s Ultrasound Image Storage (1.2.840.10008.5.1.4.1.1.6), replaced by
1.2.840.10008.5.1.4.1.1.6.1 in 1996, is the common one. A workstation pulling such a prior must
take the retired class. Measured here (Orthanc 1.10.1, DCMTK dcmqrscp 3.6.7, two US instances
of one study stored under the retired class):

- Orthanc's C-MOVE proposes the instance's own (retired) class; dcmqrscp's proposes its list of
  120 storage classes, the retired ones among them. Before qrdoctor's receiver took retired
  classes, Orthanc's C-MOVE ended 0xC000 with qrdoctor blaming its own refusal
  (``move-inbound-refused``) and dcmqrscp's ended 0xA702, read as a format it could not produce.
- dcmqrscp returns no SOP Class UID in an IMAGE-level C-FIND, so a C-GET offers the classes of
  the study's modality: without the retired US classes among them dcmqrscp had no context to
  send on (0xA702, read as a format problem too).

Now both retrieves pass against both servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qrdoctor.core.model import Status
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target

from support.compressed import start_dcmqrscp_with, start_orthanc_with
from support.corpus import make_corpus
from support.ports import free_port

LEGACY_US = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage (retired), PS3.6 Table A-1


@pytest.fixture(scope="module")
def legacy_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One US study of two instances stored under the retired Ultrasound Image Storage class."""
    directory = tmp_path_factory.mktemp("legacy-us")
    files = []
    for i, ds in enumerate(make_corpus(1, series_per_study=1, instances_per_series=2, seed=11, size=16)):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = LEGACY_US
        ds.Modality = "US"
        path = directory / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def server(request: pytest.FixtureRequest, legacy_files: list[Path]) -> Iterator[Any]:
    port = free_port()
    start = start_orthanc_with if request.param == "orthanc" else start_dcmqrscp_with
    peer = start(legacy_files, port)
    peer.store_port = port
    try:
        yield peer
    finally:
        peer.kill()


def test_a_prior_under_a_retired_storage_class_is_retrieved(server: Any) -> None:
    # Given a PACS whose only study is held under the retired US class
    target = Target("127.0.0.1", server.dicom_port, server.aet, store_port=server.store_port, timeout=5.0)
    # When qrdoctor retrieves it with C-MOVE and C-GET, its receiver taking what the PACS has
    report = Runner(target, only=["retrieve.move", "retrieve.get"], options={"listen_host": "127.0.0.1"}).run()
    # Then both pass with both objects arrived, none refused on our side
    checks = {c.id: c for c in report.checks}
    for cid in ("retrieve.move", "retrieve.get"):
        r = checks[cid]
        assert r.status is Status.PASS, (cid, r.summary, [(f.code, f.summary) for f in r.findings])
        assert r.facts["received"] == r.facts["expected"] == 2 and r.facts["failed"] == 0, r.facts
