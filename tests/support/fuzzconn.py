"""The fuzzing peer's connections: association requests parsed, PDUs and DIMSE messages read,
and every outgoing message built from parts and passed through the strike's mutation.

Written from scratch at the PDU (PS3.8 section 9) and DIMSE (PS3.7 section 9.3) level. Every read
waits at most a fraction of a second at a time and ends when the session stops, so the peer never
outlives its session, whatever qrdoctor does.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from support.fuzzarchive import MODELS, ROOT_UID, dataset_elems
from support.fuzzmutate import Mutation
from support.fuzzwire import Command, Elem, Elems, Item, Pdu, Send, fragments, pack_pdvs, text

if TYPE_CHECKING:
    from support.fuzzpeer import FuzzPACS

VERIFICATION = "1.2.840.10008.1.1"
APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
IDLE_S = 30.0  # a connection silent this long is dropped (the session normally ends first)
POLL_S = 0.2  # how long a read blocks before it looks at the session's stop event again
SEND_S = 2.0  # a send that makes no progress this long ends the connection
SLOW_S = 0.5  # a slowed-down message dribbles out for this long, then goes at once

# -- association requests and answers, parsed ----------------------------------------------------


@dataclass
class Proposal:
    """A presentation context as proposed (RQ) or answered (AC: ``result``, no abstract syntax)."""

    context_id: int
    abstract: str
    transfer_syntaxes: list[str]
    result: int | None = None


@dataclass
class Request:
    called: str
    calling: str
    contexts: list[Proposal]
    max_pdu: int = 16384
    roles: list[bytes] = field(default_factory=list)  # role selection sub-items as received


def _items(data: bytes, pos: int = 0):
    while pos + 4 <= len(data):
        kind, length = data[pos], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        yield kind, data[pos + 4:pos + 4 + length]
        pos += 4 + length


def uid(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", "replace")


def parse_associate(body: bytes) -> Request:
    """The titles, presentation contexts and user information of an A-ASSOCIATE-RQ or -AC body."""
    req = Request(called=body[4:20].decode("ascii", "replace").strip(),
                  calling=body[20:36].decode("ascii", "replace").strip(), contexts=[])
    for kind, item in _items(body, 68):
        if kind in (0x20, 0x21):
            subs = list(_items(item, 4))
            if len(item) < 4:
                continue
            abstract = next((uid(v) for k, v in subs if k == 0x30), "")
            req.contexts.append(Proposal(item[0], abstract, [uid(v) for k, v in subs if k == 0x40],
                                         item[2] if kind == 0x21 else None))
        elif kind == 0x50:
            for sub, value in _items(item):
                if sub == 0x51 and len(value) >= 4:
                    req.max_pdu = struct.unpack(">I", value[:4])[0]
                elif sub == 0x54:
                    req.roles.append(value)
    return req


def user_information(max_pdu: int, roles: list[bytes]) -> Item:
    return Item(0x50, subs=[Item(0x51, struct.pack(">I", max_pdu)), Item(0x52, text(ROOT_UID, "UI")),
                            *(Item(0x54, r) for r in roles), Item(0x55, b"FUZZPACS_1")])


def acceptable(abstract: str) -> bool:
    return abstract == VERIFICATION or abstract in MODELS or abstract.startswith("1.2.840.10008.5.1.4.1.1.")


# -- connections ------------------------------------------------------------------------------------


class Gone(Exception):
    """The connection ended (closed, aborted, mutated to a close, held, or the session stopped)."""


@dataclass
class Message:
    context_id: int
    command: dict[int, bytes]
    dataset: bytes | None

    def us(self, elem: int, default: int = 0) -> int:
        raw = self.command.get(elem, b"")
        return struct.unpack("<H", raw[:2])[0] if len(raw) >= 2 else default


def parse_command(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 8 <= len(data):
        _g, elem, length = struct.unpack_from("<HHI", data, pos)
        out[elem] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return out


class Connection:
    """One TCP connection of the peer: reading PDUs and messages, emitting (mutated) ones."""

    def __init__(self, peer: FuzzPACS, sock: socket.socket, max_pdu: int = 16384) -> None:
        self.peer, self.sock = peer, sock
        self.buf = bytearray()
        self.peer_max = max_pdu
        self.contexts: dict[int, tuple[str, bool]] = {}  # id -> (abstract syntax, explicit)
        self.queue: list[Message | str] = []
        self._cmd = bytearray()
        self._ds = bytearray()
        self._pending: Message | None = None
        sock.settimeout(POLL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- reading ---------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        while not self.peer.stopping.is_set():
            if time.monotonic() > deadline:
                raise Gone("idle")
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as exc:
                raise Gone(str(exc)) from None
            if not chunk:
                raise Gone("closed")
            self.buf += chunk
            return
        raise Gone("stopped")

    def read_pdu(self, timeout: float = IDLE_S) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while len(self.buf) < 6:
            self._fill(deadline)
        kind, length = self.buf[0], struct.unpack(">I", self.buf[2:6])[0]
        if length > 8 << 20:
            raise Gone(f"PDU of {length} bytes")
        while len(self.buf) < 6 + length:
            self._fill(deadline)
        body = bytes(self.buf[6:6 + length])
        del self.buf[:6 + length]
        return kind, body

    def _take(self, kind: int, body: bytes) -> None:
        """Account for one PDU: messages and association events go to the queue."""
        if kind == 0x05:
            self.queue.append("release")
        elif kind == 0x07:
            raise Gone("aborted by qrdoctor")
        elif kind != 0x04:
            raise Gone(f"unexpected PDU 0x{kind:02X}")
        pos = 0
        while kind == 0x04 and pos + 6 <= len(body):
            length, cx, control = struct.unpack_from(">IBB", body, pos)
            data = body[pos + 6:pos + 4 + length]
            pos += 4 + length
            if control & 1:
                self._cmd += data
                if control & 2:
                    msg = Message(cx, parse_command(bytes(self._cmd)), None)
                    self._cmd.clear()
                    if msg.us(0x0800, 0x0101) == 0x0101:
                        self.queue.append(msg)
                    else:
                        self._pending = msg
            else:
                self._ds += data
                if control & 2 and self._pending is not None:
                    self._pending.dataset = bytes(self._ds)
                    self.queue.append(self._pending)
                    self._pending = None
                    self._ds.clear()

    def next_event(self, timeout: float = IDLE_S) -> Message | str:
        while not self.queue:
            self._take(*self.read_pdu(timeout))
        return self.queue.pop(0)

    def cancelled(self, message_id: int) -> bool:
        """Whether a C-CANCEL for ``message_id`` has arrived (reads what is there, never waits)."""
        while True:
            try:
                if not select.select([self.sock], [], [], 0)[0]:
                    break
                chunk = self.sock.recv(1 << 16)
            except (OSError, ValueError) as exc:  # ValueError: the session closed the socket
                raise Gone(str(exc)) from None
            if not chunk:
                raise Gone("closed")
            self.buf += chunk
        while len(self.buf) >= 6 and len(self.buf) >= 6 + struct.unpack(">I", self.buf[2:6])[0]:
            self._take(*self.read_pdu(1.0))
        for ev in list(self.queue):
            if isinstance(ev, Message) and ev.us(0x0100) == 0x0FFF and ev.us(0x0120) == message_id:
                self.queue.remove(ev)
                return True
        return False

    # -- sending -------------------------------------------------------------------------------
    def emit(self, kind: str, pdus: list[Pdu], mut: Mutation | None) -> None:
        self.transmit(outgoing(pdus, mut))

    def emit_message(self, kind: str, context_id: int, command: list[Elem], dataset: Elems | None) -> None:
        mut = self.peer.strikes.mutation(kind, dataset is not None)
        explicit = self.contexts.get(context_id, ("", False))[1]
        pdus = message_pdus(context_id, command, dataset, explicit, self.peer_max, self.peer.together, mut)
        self.transmit(outgoing(pdus, mut))

    def emit_simple(self, kind: str, pdu_type: int, body: bytes) -> None:
        self.emit(kind, [Pdu(pdu_type, body)], self.peer.strikes.mutation(kind))

    def transmit(self, send: Send) -> None:
        """Send as the (mutated) transport says; raises Gone when the connection is to end."""
        stop = self.peer.stopping
        if send.delay and stop.wait(send.delay):
            raise Gone("stopped")
        data = send.data if send.prefix is None else send.data[:send.prefix]
        try:
            self.sock.settimeout(SEND_S)
            self._send(data, send.chunk, send.pause)
            filler = bytes(1 << 16)
            left = send.stream
            while left > 0 and not stop.is_set():
                self.sock.sendall(filler[:left])
                left -= len(filler)
        except OSError as exc:
            raise Gone(str(exc)) from None
        finally:
            try:
                self.sock.settimeout(POLL_S)
            except OSError:
                pass
        if send.after == "close":
            raise Gone("closed by mutation")
        if send.after == "hold":
            self.hold()

    def _send(self, data: bytes, chunk: int | None, pause: float) -> None:
        """All of ``data``; in small chunks with pauses for at most SLOW_S, the rest at once."""
        if not chunk:
            self.sock.sendall(data)
            return
        end = time.monotonic() + SLOW_S
        for i in range(0, len(data), chunk):
            if time.monotonic() > end:
                self.sock.sendall(data[i:])
                return
            self.sock.sendall(data[i:i + chunk])
            if self.peer.stopping.wait(pause):
                raise Gone("stopped")

    def hold(self) -> None:
        """Say nothing more; keep the connection open until qrdoctor closes it or the session ends."""
        self.peer.holds += 1
        while not self.peer.stopping.is_set():
            try:
                if not self.sock.recv(1 << 16):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        raise Gone("held")


def message_pdus(context_id: int, command: list[Elem], dataset: Elems | None, explicit: bool, peer_max: int,
                 together: bool, mut: Mutation | None) -> list[Pdu]:
    """The P-DATA-TF PDUs of one DIMSE message, mutated at the element and PDV layers."""
    cmd = Command(list(command))
    if mut is not None:
        cmd = mut.at("cmd_group", Command(mut.at("cmd", cmd.elems)))
        present = mut.at("ds_presence", dataset is not None)
        if present and dataset is None:
            dataset = dataset_elems([("PatientName", "FUZZ^ADDED"), ("QueryRetrieveLevel", "STUDY")], explicit)
        dataset = mut.at("ds", dataset) if present else None
    ds = dataset.encode() if dataset is not None else None
    if mut is not None and ds is not None:
        ds = mut.at("ds_bytes", ds)
    pdvs = fragments(context_id, cmd.encode(), ds, peer_max)
    if mut is not None:
        pdvs = mut.at("pdv", pdvs)
    return pack_pdvs(pdvs, together)


def outgoing(pdus: list[Pdu], mut: Mutation | None) -> Send:
    """What goes on the wire for these PDUs, mutated at the PDU, byte and transport layers."""
    if mut is not None:
        replacement = mut.at("replace", None)
        pdus = [replacement] if replacement is not None else mut.at("pdu", pdus)
    send = Send(b"".join(p.encode() for p in pdus), stream=sum(p.stream for p in pdus))
    if mut is not None:
        send = mut.at("send", mut.at("wire", send))
        if send.stream and send.after == "continue":
            send.after = mut.rng.choice(("hold", "close"))
    return send
