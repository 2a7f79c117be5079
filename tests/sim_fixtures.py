"""Fixtures and helpers around the simulated PACS (loaded with ``pytest_plugins = ["sim_fixtures"]``).

Fixtures:

- ``sim_pacs``: a started :class:`~qrdoctor.simulator.SimulatedPACS` (40 studies, seed 1, no
  quirks) on 127.0.0.1 and a free port; stopped after the test.
- ``sim_pacs_factory``: ``make(**kwargs) -> SimulatedPACS`` to start PACSes with other
  arguments (quirks, destinations, size...); all are stopped after the test.
- ``sim_store_scp_factory`` / ``sim_store_scp``: a pynetdicom Store SCP on a free port that
  records every C-STORE it receives (for C-MOVE destinations).
- ``dcmtk``: ``dcmtk("findscu") -> path`` of a DCMTK tool; skips the test when missing, or
  fails it when the environment variable ``CI`` is ``true``.

Helpers (import them: ``from sim_fixtures import associate, c_find``): :func:`associate`,
:func:`c_find`, :func:`free_port`, :func:`find_dcmtk_tool`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from qrdoctor.simulator import SimulatedPACS
from qrdoctor.simulator.data import SOP_CLASSES
from qrdoctor.simulator.measure import find_dcmtk_tool  # noqa: F401  (used by fixtures and tests)

LOOPBACK = "127.0.0.1"

QR_CONTEXTS = [
    Verification,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
]


# ---- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    """A currently free TCP port on loopback (for tools that must be told their port)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def associate(
    pacs: SimulatedPACS,
    calling_ae: str = "QRDOCTOR",
    called_ae: str | None = None,
    contexts: Iterable[str] = QR_CONTEXTS,
    *,
    storage_roles: bool = False,
    storage_contexts: bool | None = None,
) -> Association:
    """Associate with ``pacs`` from a fresh pynetdicom AE.

    ``storage_roles`` proposes the archive's storage SOP classes with SCP role selection, as a
    C-GET SCU must; ``storage_contexts=True`` proposes them without role selection.
    """
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = 5
    ae.dimse_timeout = 10
    ae.network_timeout = 10
    for uid in contexts:
        ae.add_requested_context(uid)
    roles = []
    if storage_roles or storage_contexts:
        for uid in SOP_CLASSES.values():
            ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            if storage_roles:
                roles.append(build_role(uid, scp_role=True))
    handlers = [(evt.EVT_C_STORE, _accept_store)] if storage_roles else []
    return ae.associate(
        LOOPBACK, pacs.port, ae_title=called_ae or pacs.ae_title,
        ext_neg=roles or None, evt_handlers=handlers,
    )


def _accept_store(event: Any) -> int:
    received = getattr(event.assoc, "sim_received", None)
    if received is None:
        received = event.assoc.sim_received = []
    received.append(event.request.AffectedSOPInstanceUID)
    return 0x0000


@dataclass
class FindResult:
    statuses: list[int] = field(default_factory=list)
    identifiers: list[Dataset] = field(default_factory=list)
    final: Dataset | None = None

    @property
    def final_status(self) -> int | None:
        return int(self.final.Status) if self.final is not None and "Status" in self.final else None

    @property
    def count(self) -> int:
        return len(self.identifiers)


def c_find(assoc: Association, model: str = StudyRootQueryRetrieveInformationModelFind,
           **keys: Any) -> FindResult:
    """Run one C-FIND with ``keys`` (keyword=value) and collect everything that came back."""
    query = Dataset()
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    result = FindResult()
    for status, identifier in assoc.send_c_find(query, model):
        if "Status" not in status:
            break  # no response (abort, timeout)
        code = int(status.Status)
        result.statuses.append(code)
        if code in (0xFF00, 0xFF01):
            result.identifiers.append(identifier)
        else:
            result.final = status
    return result




# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def sim_pacs_factory() -> Iterator[Any]:
    started: list[SimulatedPACS] = []

    def make(**kwargs: Any) -> SimulatedPACS:
        kwargs.setdefault("host", LOOPBACK)
        kwargs.setdefault("port", 0)
        pacs = SimulatedPACS(**kwargs).start()
        started.append(pacs)
        return pacs

    yield make
    for pacs in started:
        pacs.stop()


@pytest.fixture
def sim_pacs(sim_pacs_factory: Any) -> SimulatedPACS:
    return sim_pacs_factory()


class StoreRecorder:
    """A pynetdicom Store SCP on loopback that records what arrives (a C-MOVE destination)."""

    def __init__(self, ae_title: str = "QRDOCTOR", status: int = 0x0000,
                 sop_classes: Iterable[str] | None = None) -> None:
        self.ae_title = ae_title
        self.status = status
        self.sop_classes = list(sop_classes) if sop_classes is not None else list(
            SOP_CLASSES.values())
        self.received: list[dict[str, Any]] = []
        self.inbound_connections = 0
        self._lock = threading.Lock()
        self._server: Any = None

    def _on_store(self, event: Any) -> int:
        req = event.request
        with self._lock:
            self.received.append({
                "sop_instance_uid": str(req.AffectedSOPInstanceUID),
                "sop_class_uid": str(req.AffectedSOPClassUID),
                "calling_ae": event.assoc.requestor.ae_title,
                "called_ae": event.assoc.acceptor.primitive.called_ae_title
                if event.assoc.acceptor.primitive else None,
                "move_originator_ae": req.MoveOriginatorApplicationEntityTitle,
                "move_originator_id": req.MoveOriginatorMessageID,
                "patient_name": str(event.dataset.PatientName),
            })
        return self.status

    def _on_open(self, event: Any) -> None:
        with self._lock:
            self.inbound_connections += 1

    def start(self) -> StoreRecorder:
        ae = AE(ae_title=self.ae_title)
        ae.network_timeout = 10
        for uid in self.sop_classes:
            ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._server = ae.start_server(
            (LOOPBACK, 0), block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, self._on_open)],
        )
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def uids(self) -> set[str]:
        return {r["sop_instance_uid"] for r in self.received}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


@pytest.fixture
def sim_store_scp_factory() -> Iterator[Any]:
    started: list[StoreRecorder] = []

    def make(ae_title: str = "QRDOCTOR", status: int = 0x0000,
             sop_classes: Iterable[str] | None = None) -> StoreRecorder:
        scp = StoreRecorder(ae_title, status, sop_classes).start()
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()


@pytest.fixture
def sim_store_scp(sim_store_scp_factory: Any) -> StoreRecorder:
    return sim_store_scp_factory()


@pytest.fixture
def dcmtk() -> Any:
    def tool(name: str) -> str:
        path = find_dcmtk_tool(name)
        if path is None:
            message = f"DCMTK tool {name!r} not found (install Debian's dcmtk package)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        return path

    return tool
