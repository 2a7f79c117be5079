"""TCP_NODELAY on every socket qrdoctor opens or accepts (issue 14).

With Nagle's algorithm on, the second small write of a DIMSE message (the identifier after the
command) waits for the peer's ACK, which a peer delays by ~40 ms: measured against Orthanc 1.10
and dcmqrscp 3.6.7 on loopback, a pynetdicom C-FIND with no match took 45 ms with Nagle and
2.7 ms with TCP_NODELAY. Each test reads the option back with getsockopt on the socket itself.
"""

from __future__ import annotations

import socket
import threading
import time

from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from qrdoctor.dicom import compat  # noqa: F401 - installs TCP_NODELAY on pynetdicom's sockets
from qrdoctor.dicom.assoc import association
from qrdoctor.dicom.find import FindAssociation
from qrdoctor.dicom.peer import Peer
from qrdoctor.dicom.storescp import StoreSCP
from qrdoctor.simulator import SimulatedPACS


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _peer(port: int, called_ae: str = "SIMPACS") -> Peer:
    return Peer(host="127.0.0.1", port=port, called_ae=called_ae, calling_ae="QRDOCTOR",
                timeout=5.0, cancel=threading.Event())


def test_pynetdicom_requestor_association_socket():
    """The associations qrdoctor opens with pynetdicom (C-ECHO, models, C-MOVE, C-GET)."""
    with SimulatedPACS(host="127.0.0.1", port=0) as pacs:
        with association(_peer(pacs.port), [Verification]) as op:
            assert op.assoc.is_established
            assert _nodelay(op.assoc.dul.socket.socket) == 1


def test_pynetdicom_acceptor_association_socket():
    """A pynetdicom acceptor that sets nothing itself still gets TCP_NODELAY."""
    seen: list[int] = []

    def on_echo(event: evt.Event) -> int:
        seen.append(_nodelay(event.assoc.dul.socket.socket))
        return 0x0000

    ae = AE("ACCEPTOR")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        client = AE("QRDOCTOR")
        client.add_requested_context(Verification)
        assoc = client.associate("127.0.0.1", server.server_address[1], ae_title="ACCEPTOR")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        server.shutdown()
    assert seen == [1]


def test_simulator_accepted_sockets():
    with SimulatedPACS(host="127.0.0.1", port=0) as pacs:
        with association(_peer(pacs.port), [Verification]):
            served = pacs._server.active_associations  # the simulator's side of our association
            assert served
            assert [_nodelay(a.dul.socket.socket) for a in served] == [1] * len(served)


def test_find_client_socket():
    """qrdoctor's own C-FIND client (and the raw association probes share its connect)."""
    with SimulatedPACS(host="127.0.0.1", port=0) as pacs:
        client = FindAssociation("127.0.0.1", pacs.port, "QRDOCTOR", "SIMPACS",
                                 [StudyRootQueryRetrieveInformationModelFind], timeout=5.0)
        try:
            client.open()
            assert client.sock is not None
            assert _nodelay(client.sock) == 1
        finally:
            client.release()


def test_store_scp_accepted_connection(tmp_path):
    scp = StoreSCP("QRDOCTOR", host="127.0.0.1", port=0, directory=str(tmp_path)).start()
    try:
        with socket.create_connection(("127.0.0.1", scp.port), timeout=5):
            deadline = time.monotonic() + 5
            flags: list[int] = []
            while time.monotonic() < deadline:
                flags = [_nodelay(s) for s in list(scp._open)]  # its side of the connection
                if flags and all(flags):
                    break
                time.sleep(0.02)
            assert flags == [1]
    finally:
        scp.stop()


def test_every_read_asks_for_an_immediate_ack(monkeypatch):
    """TCP_QUICKACK before each read, on the C-FIND client's socket and on pynetdicom's: a peer
    with Nagle's algorithm on (Orthanc and DCMTK as shipped) otherwise waits ~40 ms for our
    delayed ACK before the second segment of a response. Measured with benchmarks/full_run.py
    --peers-as-shipped: the full default run against Orthanc 2.29 s -> 1.38 s."""
    from qrdoctor.dicom import pdu

    seen: list[socket.socket] = []
    original = pdu.quick_ack
    monkeypatch.setattr(pdu, "quick_ack", lambda sock: (seen.append(sock), original(sock)))
    with SimulatedPACS(host="127.0.0.1", port=0) as pacs:
        with association(_peer(pacs.port), [Verification]) as op:
            assert op.assoc.send_c_echo().Status == 0
            sockets = {id(op.assoc.dul.socket.socket)}
        fa = FindAssociation("127.0.0.1", pacs.port, "QRDOCTOR", "SIMPACS",
                             [StudyRootQueryRetrieveInformationModelFind], timeout=5.0)
        fa.open()
        try:
            sockets.add(id(fa.sock))
        finally:
            fa.release()
    assert sockets <= {id(s) for s in seen}
