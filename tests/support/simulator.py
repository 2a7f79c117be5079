"""Fixtures and helpers around the simulated PACS (registered by ``tests/conftest.py``).

Fixtures:

- ``sim_pacs``: a started :class:`~qrdoctor.simulator.SimulatedPACS` (40 studies, seed 1, no
  quirks) on 127.0.0.1 and a free port; stopped after the test.
- ``sim_pacs_factory``: ``make(**kwargs) -> SimulatedPACS`` to start PACSes with other
  arguments (quirks, destinations, size...); all are stopped after the test.
- ``sim_store_scp_factory`` / ``sim_store_scp``: a :class:`support.storescp.StoreRecorder` on a
  free port that records every C-STORE it receives (for C-MOVE destinations).
- ``dcmtk``: ``dcmtk("findscu") -> path`` of a DCMTK tool; skips the test when missing, or
  fails it in CI (``CI=true``).

Helpers (``from support.simulator import associate, c_find``): :func:`associate` opens a
pynetdicom association with a simulated PACS, :func:`c_find` runs one C-FIND on it.
"""

from __future__ import annotations

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
from qrdoctor.simulator.measure import find_dcmtk_tool

from support.ports import LOOPBACK
from support.storescp import StoreRecorder
from support.tools import missing

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
            missing(f"DCMTK tool {name!r} not found (install Debian's dcmtk package)")
        return path

    return tool
