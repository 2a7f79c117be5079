"""pytest fixtures for real DICOM peers (Orthanc 1.10.1 and DCMTK dcmqrscp 3.6.7) on loopback.

Registered by ``tests/conftest.py`` (``pytest_plugins``); the servers are
:mod:`support.orthanc` and :mod:`support.dcmqrscp`. Every fixture calls
:func:`support.tools.require_tool` first: a missing server skips the test on a developer machine
and fails it in CI (``CI=true``).

Fixtures
--------
``peer_corpus`` (session)
    The instances loaded into both default servers: ``make_corpus(5,
    series_per_study=2, instances_per_series=2, seed=20240501)`` -- 5 studies, 10 series,
    20 instances; patients SMITH^JOHN, SMITHSON^ANNA^MARIE, McDonald^Ronald, MÜLLER^JÜRGEN
    (ISO_IR 100), NGUYEN^THI^MAI; modalities CT, MR, CR (+2 random).

``orthanc`` (session) -> ``OrthancServer``
    A healthy Orthanc, AE ``ORTHANC``, with ``peer_corpus`` loaded, ``DicomAlwaysAllowEcho/
    Find/Move/Get`` true, and ``DicomModalities`` ``QRDOCTOR -> ("QRDOCTOR", 127.0.0.1,
    store_port)``. Attributes: ``aet``, ``host``, ``dicom_port``, ``http_port``, ``base_url``,
    ``target``, ``store_port`` (reserved for our Store SCP in retrieve tests), ``corpus``,
    ``log_path``. Shared by the whole session: never change its data or config; use the
    factory for that.

``orthanc_dicomweb`` (session) -> ``OrthancServer``
    The same, plus the DICOMweb plugin: ``dicomweb_url`` is ``base_url + "/dicom-web"``.

``dcmqrscp`` (session) -> ``DcmqrscpServer``
    A healthy dcmqrscp, AE ``DCMQRSCP`` (RW, ANY peer), with ``peer_corpus`` loaded by
    C-STORE and a HostTable entry ``QRDOCTOR = (QRDOCTOR, 127.0.0.1, store_port)`` as the move
    destination. Attributes as above (``dicom_port``, ``store_port``, ``corpus`` ...).

``orthanc_factory`` (function) -> ``make(aet="ORTHANC", config=None, *, dicomweb=False,
datasets=None, allow_all=True, store_port=None)``
    Starts an Orthanc and returns it, started, with ``datasets`` loaded. Its config is the
    harness base (:class:`support.orthanc.OrthancServer`), plus ``DicomModalities`` ``QRDOCTOR -> (QRDOCTOR,
    127.0.0.1, store_port)`` on a fresh (or the given) ``store_port``, plus -- with
    ``allow_all`` -- ``DicomAlwaysAllowEcho/Store/Find/Move/Get`` true; ``config`` is merged
    over that key by key (``"DicomModalities": {}`` makes QRDOCTOR unknown). With
    ``allow_all=False`` Orthanc's own defaults apply: Find/Move/Get only for AEs listed in
    ``DicomModalities`` (Orthanc 1.10.1 accepts the association of an unlisted AE, then
    *aborts* it at the C-FIND/C-MOVE request). Every server it made is killed after the test.

``dcmqrscp_factory`` (function) -> ``make(aet="DCMQRSCP", peers=None, access="RW", *,
restrict_peers=False, datasets=None, max_studies=200, extra_args=(), store_port=None,
debug=False)``
    Starts a dcmqrscp and returns it with ``datasets`` stored. ``peers`` defaults to
    ``{"QRDOCTOR": ("QRDOCTOR", "127.0.0.1", store_port)}`` on a fresh ``store_port``.
    ``restrict_peers=True`` lets only the HostTable peers associate (calling AE + host).
    ``extra_args`` go to dcmqrscp (e.g. ``["--disable-get"]``, ``["-QP"]``). Every server it
    made is killed at the end of the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from pydicom.dataset import Dataset

from support.corpus import make_corpus
from support.dcmqrscp import DcmqrscpServer
from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer
from support.ports import LOOPBACK, free_port
from support.tools import DCMQRSCP_BIN, DICOMWEB_PLUGIN, ORTHANC_BIN, require_tool

DEFAULT_CORPUS_SEED = 20240501
MOVE_DESTINATION_AE = "QRDOCTOR"


def _orthanc_config(store_port: int, allow_all: bool) -> dict[str, Any]:
    return {
        **(ORTHANC_ALLOW_ALL if allow_all else {}),
        "DicomModalities": {
            MOVE_DESTINATION_AE: [MOVE_DESTINATION_AE, LOOPBACK, store_port],
        },
    }


def _start_orthanc(
    aet: str,
    config: Mapping[str, Any] | None,
    dicomweb: bool,
    datasets: Sequence[Dataset] | None,
    allow_all: bool,
    store_port: int | None,
) -> OrthancServer:
    require_tool(ORTHANC_BIN)
    if dicomweb:
        require_tool(DICOMWEB_PLUGIN)
    store_port = store_port or free_port()
    merged: dict[str, Any] = _orthanc_config(store_port, allow_all)
    merged.update(config or {})
    server = OrthancServer(aet=aet, config=merged, dicomweb=dicomweb)
    server.store_port = store_port
    server.corpus = list(datasets or [])
    try:
        server.start()
        if datasets:
            server.upload(datasets)
    except BaseException:
        server.stop(grace=0)
        raise
    return server


def _start_dcmqrscp(
    aet: str,
    peer_table: Mapping[str, tuple[str, str, int]] | None,
    access: str,
    restrict_peers: bool,
    datasets: Sequence[Dataset] | None,
    max_studies: int,
    extra_args: Sequence[str],
    store_port: int | None,
    debug: bool,
) -> DcmqrscpServer:
    require_tool(DCMQRSCP_BIN)
    store_port = store_port or free_port()
    if peer_table is None:
        peer_table = {MOVE_DESTINATION_AE: (MOVE_DESTINATION_AE, LOOPBACK, store_port)}
    server = DcmqrscpServer(
        aet=aet,
        peers=peer_table,
        access=access,
        restrict_peers=restrict_peers,
        max_studies=max_studies,
        extra_args=extra_args,
        debug=debug,
    )
    server.store_port = store_port
    server.corpus = list(datasets or [])
    try:
        server.start()
        if datasets:
            calling = next(iter(peer_table.values()))[0] if peer_table else "QRDOCTOR"
            server.store(datasets, calling_ae=calling)
    except BaseException:
        server.stop(grace=0)
        raise
    return server


def _stop_all(servers: list[Any]) -> None:
    """Stop throw-away servers at once (SIGKILL) and concurrently: a graceful Orthanc
    shutdown alone takes ~3 s and buys nothing for a temp dir that is deleted anyway."""
    threads = [threading.Thread(target=s.kill) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(scope="session")
def peer_corpus() -> list[Dataset]:
    """The instances loaded into the default ``orthanc`` and ``dcmqrscp`` servers."""
    return make_corpus(5, series_per_study=2, instances_per_series=2,
                             seed=DEFAULT_CORPUS_SEED)


@pytest.fixture(scope="session")
def orthanc(peer_corpus: list[Dataset]) -> Iterator[OrthancServer]:
    """A healthy, session-wide Orthanc with ``peer_corpus`` loaded. Do not modify it."""
    server = _start_orthanc("ORTHANC", None, False, peer_corpus, True, None)
    yield server
    _stop_all([server])


@pytest.fixture(scope="session")
def orthanc_dicomweb(peer_corpus: list[Dataset]) -> Iterator[OrthancServer]:
    """Like ``orthanc``, with the DICOMweb plugin at ``dicomweb_url``. Do not modify it."""
    server = _start_orthanc("ORTHANC", None, True, peer_corpus, True, None)
    yield server
    _stop_all([server])


@pytest.fixture(scope="session")
def dcmqrscp(peer_corpus: list[Dataset]) -> Iterator[DcmqrscpServer]:
    """A healthy, session-wide dcmqrscp with ``peer_corpus`` loaded. Do not modify it."""
    server = _start_dcmqrscp("DCMQRSCP", None, "RW", False, peer_corpus, 200, (), None, False)
    yield server
    _stop_all([server])


@pytest.fixture
def orthanc_factory() -> Iterator[Any]:
    """``make(aet="ORTHANC", config=None, *, dicomweb=False, datasets=None, allow_all=True,
    store_port=None) -> OrthancServer`` (started); all killed after the test."""
    made: list[OrthancServer] = []

    def make(
        aet: str = "ORTHANC",
        config: Mapping[str, Any] | None = None,
        *,
        dicomweb: bool = False,
        datasets: Sequence[Dataset] | None = None,
        allow_all: bool = True,
        store_port: int | None = None,
    ) -> OrthancServer:
        server = _start_orthanc(aet, config, dicomweb, datasets, allow_all, store_port)
        made.append(server)
        return server

    yield make
    _stop_all(made)


@pytest.fixture
def dcmqrscp_factory() -> Iterator[Any]:
    """``make(aet="DCMQRSCP", peers=None, access="RW", *, restrict_peers=False,
    datasets=None, max_studies=200, extra_args=(), store_port=None, debug=False)
    -> DcmqrscpServer`` (started); all killed after the test."""
    made: list[DcmqrscpServer] = []

    def make(
        aet: str = "DCMQRSCP",
        peers: Mapping[str, tuple[str, str, int]] | None = None,
        access: str = "RW",
        *,
        restrict_peers: bool = False,
        datasets: Sequence[Dataset] | None = None,
        max_studies: int = 200,
        extra_args: Sequence[str] = (),
        store_port: int | None = None,
        debug: bool = False,
    ) -> Any:
        server = _start_dcmqrscp(aet, peers, access, restrict_peers, datasets, max_studies,
                                 extra_args, store_port, debug)
        made.append(server)
        return server

    yield make
    _stop_all(made)
