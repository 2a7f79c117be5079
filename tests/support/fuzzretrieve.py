"""The fuzzing peer's retrieves: a C-MOVE calls qrdoctor's temporary Store SCP back as a Store SCU
(an association *to* qrdoctor, C-STORE requests, pending counters, a final count), a C-GET
sends its C-STORE requests on its own association. Both go through the strikes like every
other message, so qrdoctor's receiver and its C-MOVE/C-GET follower see mutated bytes.
"""

from __future__ import annotations

import itertools
import socket
from typing import TYPE_CHECKING

from support.fuzzarchive import (
    CT_IMAGE,
    EXPLICIT,
    IMPLICIT,
    UNIQUE,
    dataset_elems,
    identifier_keys,
    instances,
)
from support.fuzzconn import (
    APP_CONTEXT,
    Connection,
    Gone,
    Message,
    parse_associate,
    uid,
    user_information,
)
from support.fuzzwire import Assoc, Elem, Elems, Item, Pdu, text, us

if TYPE_CHECKING:
    from support.fuzzpeer import Association, FuzzPACS


STORED = (0x0000, 0xB000, 0xB006, 0xB007)  # C-STORE statuses that mean the object was kept


def counts(remaining: int | None, completed: int, failed: int, warning: int) -> list[Elem]:
    pairs = ((0x1020, remaining), (0x1021, completed), (0x1022, failed), (0x1023, warning))
    return [Elem(tag, b"US", us(n)) for tag, n in pairs if n is not None]


class Retrieve:
    """A C-MOVE (C-STORE to qrdoctor's Store SCP) or a C-GET (C-STORE on this association)."""

    def __init__(self, assoc: Association, msg: Message) -> None:
        self.assoc, self.msg = assoc, msg
        self.move = msg.us(0x0100) == 0x0021
        self.rsp = 0x8021 if self.move else 0x8010
        self.done = self.failed = 0
        self.failed_uids: list[str] = []

    def run(self) -> None:
        conn, msg = self.assoc.conn, self.msg
        explicit = conn.contexts.get(msg.context_id, ("", False))[1]
        keys = identifier_keys(msg.dataset or b"", explicit)
        todo = instances({k: v for k, v in keys.items() if k in UNIQUE.values()})
        if self.move and uid(msg.command.get(0x0600, b"")) != self.assoc.peer.move_ae:
            self.assoc.respond(msg, self.rsp, 0xA801, extra=counts(None, 0, 0, 0))
            return
        sender = StoreClient(self.assoc.peer, msg.us(0x0110, 1)) if self.move else GetSender(self)
        try:
            sender.open()
        except Gone:
            self.assoc.respond(msg, self.rsp, 0xA801 if self.move else 0xA702, extra=counts(None, 0, len(todo), 0))
            return
        try:
            for n, rec in enumerate(todo):
                if conn.cancelled(msg.us(0x0110, 1)):
                    sender.close()
                    self.assoc.respond(msg, self.rsp, 0xFE00, extra=counts(len(todo) - n, self.done, self.failed, 0))
                    return
                self._store(sender, rec)
                self.assoc.respond(msg, self.rsp, 0xFF00,
                                   extra=counts(len(todo) - n - 1, self.done, self.failed, 0))
        finally:
            sender.close()
        self.final()

    def _store(self, sender: StoreClient | GetSender, rec: dict[str, str]) -> None:
        if sender.store(rec):
            self.done += 1
        else:
            self.failed += 1
            self.failed_uids.append(rec["SOPInstanceUID"])

    def final(self) -> None:
        status = 0x0000 if not self.failed else (0xA702 if not self.done else 0xB000)
        explicit = self.assoc.conn.contexts.get(self.msg.context_id, ("", False))[1]
        ds = dataset_elems([("FailedSOPInstanceUIDList", "\\".join(self.failed_uids))], explicit) \
            if self.failed_uids else None
        self.assoc.respond(self.msg, self.rsp, status, ds, counts(None, self.done, self.failed, 0))


def store_request(rec: dict[str, str], message_id: int, originator: tuple[str, int] | None) -> list[Elem]:
    elems = [Elem(0x0002, b"UI", text(rec["SOPClassUID"], "UI")), Elem(0x0100, b"US", us(0x0001)),
             Elem(0x0110, b"US", us(message_id)), Elem(0x0700, b"US", us(0)), Elem(0x0800, b"US", us(0)),
             Elem(0x1000, b"UI", text(rec["SOPInstanceUID"], "UI"))]
    if originator:
        elems += [Elem(0x1030, b"AE", text(originator[0])), Elem(0x1031, b"US", us(originator[1]))]
    return elems


def stored_object(rec: dict[str, str], explicit: bool) -> Elems:
    keys = ("SOPClassUID", "SOPInstanceUID", "StudyDate", "Modality", "PatientName", "PatientID",
            "StudyInstanceUID", "SeriesInstanceUID", "InstanceNumber")
    return dataset_elems([(k, rec[k]) for k in keys], explicit)


class StoreClient:
    """The peer as the PACS calling back: an association to qrdoctor's Store SCP for a C-MOVE."""

    def __init__(self, peer: FuzzPACS, move_id: int) -> None:
        self.peer, self.move_id = peer, move_id
        self.conn: Connection | None = None
        self.ids = itertools.count(1)

    def open(self) -> None:
        peer = self.peer
        try:
            sock = peer.track(socket.create_connection(("127.0.0.1", peer.store_port), timeout=2.0))
        except OSError as exc:
            raise Gone(f"store port: {exc}") from None
        self.conn = conn = Connection(peer, sock)
        contexts = [Item(0x20, bytes([1, 0, 0, 0]), [Item(0x30, text(CT_IMAGE, "UI")), Item(0x40, text(IMPLICIT, "UI")),
                                                      Item(0x40, text(EXPLICIT, "UI"))])]
        rq = Assoc(0x01, peer.move_ae.encode().ljust(16), peer.ae_title.encode().ljust(16),
                   [Item(0x10, APP_CONTEXT), *contexts, user_information(peer.max_pdu, [])])
        mut = peer.strikes.mutation("A-ASSOCIATE-RQ")
        conn.emit("A-ASSOCIATE-RQ", [Pdu(0x01, (mut.at("assoc", rq) if mut else rq).body())], mut)
        kind, body = conn.read_pdu(5.0)
        if kind != 0x02 or len(body) < 68:
            raise Gone("store association refused")
        ac = parse_associate(body)
        conn.peer_max = ac.max_pdu
        for p in ac.contexts:
            if p.result == 0 and p.transfer_syntaxes:
                conn.contexts[p.context_id] = (CT_IMAGE, p.transfer_syntaxes[0] == EXPLICIT)

    def store(self, rec: dict[str, str]) -> bool:
        """One C-STORE; False when it failed or the store association is gone (then for good)."""
        conn = self.conn
        if conn is None or not conn.contexts:
            return False
        cx, (_abstract, explicit) = next(iter(conn.contexts.items()))
        try:
            conn.emit_message("C-STORE-RQ", cx, store_request(rec, next(self.ids), (self.peer.ae_title, self.move_id)),
                              stored_object(rec, explicit))
            ev = conn.next_event(5.0)
        except Gone:
            self.conn = None
            conn.sock.close()
            return False
        return isinstance(ev, Message) and ev.us(0x0900, 0xFFFF) in STORED

    def close(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        try:
            conn.emit_simple("A-RELEASE-RQ", 0x05, bytes(4))
            conn.read_pdu(2.0)
        except Gone:
            pass
        finally:
            conn.sock.close()


class GetSender:
    """C-STORE sub-operations of a C-GET, on the C-GET's own association."""

    def __init__(self, retrieve: Retrieve) -> None:
        self.assoc = retrieve.assoc
        self.ids = itertools.count(1)

    def open(self) -> None:
        pass

    def store(self, rec: dict[str, str]) -> bool:
        conn = self.assoc.conn
        cx = next((i for i, (a, _e) in conn.contexts.items() if a == rec["SOPClassUID"]), None)
        if cx is None:
            return False
        msg_id = next(self.ids)
        conn.emit_message("C-STORE-RQ", cx, store_request(rec, msg_id, None), stored_object(rec, conn.contexts[cx][1]))
        while True:
            ev = conn.next_event(5.0)
            if isinstance(ev, Message) and ev.us(0x0100) == 0x8001:
                return ev.us(0x0900, 0xFFFF) in STORED
            if ev == "release":
                raise Gone("release during C-GET")
            if isinstance(ev, Message):
                conn.queue.append(ev)  # a C-CANCEL: seen by the next cancelled()
                return True

    def close(self) -> None:
        pass
