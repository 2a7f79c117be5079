"""The test Store SCP: a C-MOVE destination that records what arrives and can be told to refuse.

Tests that only need *a* receiving end use the product's own
:class:`qrdoctor.dicom.storescp.StoreSCP`. This one exists for what the product's receiver
deliberately cannot do: answer every C-STORE with a chosen status (0xA700 refused, 0xB007
warning...) and accept only some SOP classes, so that a PACS's C-MOVE sub-operations can be
made to fail or warn; it also records each C-STORE's calling/called AE titles and Move
Originator without writing files. It is a pynetdicom Storage SCP on 127.0.0.1 and a port the
kernel chooses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from qrdoctor.simulator.data import SOP_CLASSES

from support.ports import LOOPBACK


class StoreRecorder:
    """A pynetdicom Store SCP on loopback that records what arrives (a C-MOVE destination).

    ``status`` is the answer to every C-STORE; ``sop_classes`` the storage SOP classes it
    accepts (by default those of the simulated PACS's archive). ``received`` holds one dict per
    C-STORE, ``inbound_connections`` counts TCP connections.
    """

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

    def __enter__(self) -> StoreRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
