"""Hostile peers: raw-socket DICOM acceptors that run a scripted exchange, byte for byte.

The fault peers in ``support.faults`` are real pynetdicom SCPs: they can only send what
pynetdicom is willing to encode. A hostile peer is written from scratch at the PDU and DIMSE
level, so it can send anything -- a truncated PDU, an A-ASSOCIATE-AC without user information,
a C-FIND response without a Status, pending responses that never end -- and then hold the
connection open or close it. It is independent of qrdoctor's own PDU layer on purpose: the
bytes under test are built here.

Usage::

    script = Script(messages=[echo_rsp(), truncated_reply(echo_rsp(), 10)])
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae="HOSTILE", timeout=2)
    assert peer.requests("message")        # what the client sent, parsed

How a connection runs (one thread per connection; every connection starts the script afresh):

1. The client's **A-ASSOCIATE-RQ** is answered with ``Script.associate`` (default
   :func:`accept`: an A-ASSOCIATE-AC accepting every proposed context).
2. Each **DIMSE message** the client sends (a command set and, when its Command Data Set Type
   says so, a data set -- however they are fragmented into PDVs and PDUs) is answered with the
   next entry of ``Script.messages``; once they are used up, with ``Script.then``.
3. An **A-RELEASE-RQ** is answered with ``Script.release`` (default: A-RELEASE-RP, then close);
   an **A-ABORT** or the end of the connection ends it.

A reply (:data:`Reply`) is one of:

- ``bytes`` -- sent as they are (build them with the functions below, then cut or corrupt
  them at will);
- a list or tuple of replies -- each in turn;
- :data:`HOLD` -- answer nothing more and keep the connection open (what arrives is still read
  and recorded, never answered) until the client goes away or the peer is stopped;
- :data:`CLOSE` -- close the connection at once (:data:`RESET` closes it with a TCP reset);
- a callable taking the :class:`Request` and returning any of the above, or an *iterable*
  (a generator) of them: its items are sent one by one while the peer keeps reading, and a
  number in it pauses for that many seconds -- e.g. pending responses that never end. What
  arrives meanwhile (a C-CANCEL) is recorded and answered only after the iterable ends.

Nothing waits longer than the peer lives: leaving the ``with`` block closes every connection.
Peers listen on 127.0.0.1 only. Errors inside the peer's own threads (a broken script) are kept
in :attr:`HostilePeer.errors` rather than lost.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom.pdu import A_ASSOCIATE_RQ

# PDU types (PS3.8 table 9-11)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF = 0x01, 0x02, 0x03, 0x04
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
HOSTILE_UID = "1.2.826.0.1.3680043.9.7433.1.99"  # the implementation class UID we claim

# Command Field values (PS3.7 annex E) and the command elements (group 0000) used here
C_ECHO_RQ, C_FIND_RQ = 0x0030, 0x0020
C_ECHO_RSP, C_FIND_RSP, C_CANCEL_RQ = 0x8030, 0x8020, 0x0FFF
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID = 0x0002, 0x0100, 0x0110
MESSAGE_ID_BEING_RESPONDED_TO, DATA_SET_TYPE, STATUS = 0x0120, 0x0800, 0x0900
NO_DATA_SET = 0x0101


class _Action:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


HOLD = _Action("HOLD")  # answer nothing more; keep the connection open
CLOSE = _Action("CLOSE")  # close the connection
RESET = _Action("RESET")  # close the connection with a TCP reset (SO_LINGER 0)

Reply = bytes | _Action | list | tuple | Callable[["Request"], Any]


# ----------------------------------------------------------------------------------------------
# what the client sent
# ----------------------------------------------------------------------------------------------


@dataclass
class Request:
    """One thing the client sent, parsed: ``kind`` is associate, message, release or abort."""

    kind: str
    connection: int  # 1 for the first connection the peer accepted, 2 for the next, ...
    raw: bytes = b""  # the (last) PDU it arrived in
    associate: Any = None  # kind "associate": pynetdicom's A-ASSOCIATE-RQ PDU object
    context_id: int | None = None  # kind "message": the presentation context it came on
    command: dict[int, bytes] = field(default_factory=dict)  # element number -> value bytes
    dataset: bytes = b""  # kind "message": the data set that followed the command, if any
    at: float = field(default_factory=time.monotonic)

    def us(self, elem: int) -> int | None:
        raw = self.command.get(elem)
        return struct.unpack("<H", raw[:2])[0] if raw and len(raw) >= 2 else None

    @property
    def command_field(self) -> int | None:
        return self.us(COMMAND_FIELD)

    @property
    def message_id(self) -> int | None:
        return self.us(MESSAGE_ID)

    @property
    def sop_class(self) -> str:
        return self.command.get(AFFECTED_SOP_CLASS, b"").rstrip(b"\x00 ").decode("ascii", "replace")

    @property
    def is_cancel(self) -> bool:
        return self.command_field == C_CANCEL_RQ

    @property
    def proposed(self) -> list[tuple[int, str, list[str]]]:
        """Kind "associate": the proposed contexts as (id, abstract syntax, transfer syntaxes)."""
        out = []
        for cx in self.associate.presentation_context:
            out.append((cx.context_id, str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax]))
        return out


def parse_command(data: bytes) -> dict[int, bytes]:
    """A command set's elements (Implicit VR Little Endian), keyed by element number."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        _group, elem, length = struct.unpack_from("<HHI", data, pos)
        out[elem] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return out


# ----------------------------------------------------------------------------------------------
# building what the peer sends
# ----------------------------------------------------------------------------------------------


def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: the six-byte header (``length`` overrides the true body length) and the body."""
    return struct.pack(">BBI", pdu_type, 0, len(body) if length is None else length) + body


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def _ae(title: str | bytes) -> bytes:
    raw = title.encode("ascii") if isinstance(title, str) else title
    return raw[:16].ljust(16, b" ")


def user_information(max_pdu: int | None = 16384, impl_uid: bytes | None = HOSTILE_UID.encode(),
                     impl_version: bytes | None = b"HOSTILE_1", extra: bytes = b"") -> bytes:
    """A User Information item (0x50): maximum length, implementation class UID and version
    name sub-items (each left out when None), then ``extra`` raw sub-items."""
    sub = b""
    if max_pdu is not None:
        sub += _item(0x51, struct.pack(">I", max_pdu))
    if impl_uid is not None:
        sub += _item(0x52, impl_uid)
    if impl_version is not None:
        sub += _item(0x55, impl_version)
    return _item(0x50, sub + extra)


def ac_pdu(contexts: Iterable[tuple[int, int, str]], *, called: str | bytes = "HOSTILE",
           calling: str | bytes = "QRDOCTOR", user_info: bytes | None = None,
           app_context: str = APPLICATION_CONTEXT, **user: Any) -> bytes:
    """An A-ASSOCIATE-AC PDU (PS3.8 9.3.3) built byte by byte.

    ``contexts`` are (context id, result, transfer syntax) rows; ``user_info`` replaces the
    User Information item (``b""`` leaves it out); other keywords go to
    :func:`user_information` (``max_pdu``, ``impl_uid``, ``impl_version``, ``extra``).
    """
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    body += _item(0x10, app_context.encode("ascii"))
    for cx_id, result, ts in contexts:
        body += _item(0x21, bytes([cx_id, 0, result, 0]) + _item(0x40, ts.encode("ascii")))
    body += user_information(**user) if user_info is None else user_info
    return pdu(ASSOCIATE_AC, body)


def rj_pdu(result: int = 1, source: int = 1, reason: int = 1) -> bytes:
    return pdu(ASSOCIATE_RJ, bytes([0, result, source, reason]))


def abort_pdu(source: int = 2, reason: int = 0) -> bytes:
    return pdu(ABORT, bytes([0, 0, source, reason]))


RELEASE_RP_PDU = pdu(RELEASE_RP, bytes(4))


def accept(*, transfer_syntax: str = IMPLICIT_LE, context_ids: Callable[[int], int] | None = None,
           only: Iterable[str] | None = None, **ac_options: Any) -> Callable[[Request], bytes]:
    """A reply to the A-ASSOCIATE-RQ: an AC accepting every proposed context (or those whose
    abstract syntax is in ``only``; the others get result 3, abstract syntax not supported)
    with ``transfer_syntax`` (the first proposed one when it was not proposed).
    ``context_ids`` maps each proposed id to the id the AC states (to send even or unknown
    ids); other keywords go to :func:`ac_pdu`."""
    wanted = None if only is None else {str(uid) for uid in only}

    def reply(rq: Request) -> bytes:
        rows = []
        for cx_id, abstract, syntaxes in rq.proposed:
            ts = transfer_syntax if transfer_syntax in syntaxes else syntaxes[0]
            result = 0 if wanted is None or abstract in wanted else 3
            rows.append((context_ids(cx_id) if context_ids else cx_id, result, ts))
        calling = rq.associate.calling_ae_title
        called = rq.associate.called_ae_title
        ac_options.setdefault("called", called)
        ac_options.setdefault("calling", calling)
        return ac_pdu(rows, **ac_options)

    return reply


def command(items: Iterable[tuple[int, bytes]], pad: bool = True) -> bytes:
    """A command set from (element number, value) pairs, with its group length element first;
    values are padded to even length unless ``pad`` is False (to send odd lengths)."""
    body = b""
    for elem, value in items:
        if pad and len(value) % 2:
            value += b"\x00"
        body += struct.pack("<HHI", 0, elem, len(value)) + value
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def encode_identifier(ds: Dataset, explicit: bool = False) -> bytes:
    """A data set as Little Endian bytes (Implicit VR unless ``explicit``)."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, not explicit
    write_dataset(fp, ds)
    return fp.getvalue()


def p_data(context_id: int, cmd: bytes, dataset: bytes | None = None, fragment: int | None = None) -> bytes:
    """P-DATA-TF PDUs carrying a command set and an optional data set (each fragment at most
    ``fragment`` bytes; one PDU per fragment)."""
    out = b""
    for payload, kind in ((cmd, 0x01), (dataset, 0x00)):
        if payload is None:
            continue
        size = fragment or max(len(payload), 1)
        starts = list(range(0, len(payload), size)) or [0]
        for start in starts:
            control = kind | (0x02 if start == starts[-1] else 0)
            pdv = payload[start:start + size]
            out += pdu(P_DATA_TF, struct.pack(">IBB", len(pdv) + 2, context_id, control) + pdv)
    return out


def rsp(rq: Request, command_field: int, status: int | None, *, data_set: bytes | None = None,
        message_id: int | None = None, sop_class: str | None = None, omit: Iterable[int] = (),
        extra: Iterable[tuple[int, bytes]] = (), context_id: int | None = None, pad: bool = True,
        fragment: int | None = None) -> bytes:
    """A DIMSE response to ``rq`` as P-DATA-TF bytes.

    ``status`` None leaves the Status element out; ``message_id`` overrides the Message ID
    Being Responded To; ``omit`` drops further elements; ``extra`` adds raw ones (``pad``
    False keeps their odd lengths); ``fragment`` splits the command and data set into PDVs
    (and PDUs) of at most that many bytes."""
    responded = rq.message_id if message_id is None else message_id
    items = [
        (AFFECTED_SOP_CLASS, (sop_class or rq.sop_class).encode("ascii")),
        (COMMAND_FIELD, us(command_field)),
        (MESSAGE_ID_BEING_RESPONDED_TO, us(responded or 0)),
        (DATA_SET_TYPE, us(0x0001 if data_set is not None else NO_DATA_SET)),
    ]
    if status is not None:
        items.append((STATUS, us(status)))
    items = [(e, v) for e, v in [*items, *extra] if e not in set(omit)]
    items.sort(key=lambda ev: ev[0])
    cx = rq.context_id if context_id is None else context_id
    return p_data(cx or 1, command(items, pad), data_set, fragment)


def echo_rsp(status: int | None = 0x0000, **kw: Any) -> Callable[[Request], bytes]:
    """A reply: a C-ECHO-RSP with ``status`` (keywords as for :func:`rsp`)."""
    return lambda rq: rsp(rq, C_ECHO_RSP, status, **kw)


def find_rsp(status: int | None, identifier: Dataset | bytes | None = None,
             **kw: Any) -> Callable[[Request], bytes]:
    """A reply: one C-FIND-RSP (a pending one carries ``identifier``)."""
    def reply(rq: Request) -> bytes:
        data = encode_identifier(identifier) if isinstance(identifier, Dataset) else identifier
        return rsp(rq, C_FIND_RSP, status, data_set=data, **kw)

    return reply


def find_answers(identifiers: Iterable[Dataset | bytes], final: int | None = 0x0000,
                 **final_kw: Any) -> Callable[[Request], list[bytes]]:
    """A reply: one pending C-FIND-RSP per identifier, then the final one with ``final``
    (keywords apply to the final response only, e.g. ``message_id`` or ``omit``)."""
    def reply(rq: Request) -> list[bytes]:
        out = [find_rsp(0xFF00, ds)(rq) for ds in identifiers]
        return [*out, find_rsp(final, **final_kw)(rq)]

    return reply


def endless_pendings(identifier: Dataset | bytes, every: float = 0.01) -> Callable[[Request], Iterator]:
    """A reply: pending C-FIND-RSPs, one every ``every`` seconds, for as long as the client
    listens -- a C-CANCEL that arrives meanwhile is recorded and ignored."""
    def reply(rq: Request) -> Iterator:
        one = find_rsp(0xFF00, identifier)(rq)
        for _ in itertools.count():
            yield one
            yield every

    return reply


def by_command(replies: dict[int, Any], default: Reply = HOLD) -> Callable[[Request], Any]:
    """A reply chosen by the request's Command Field (:data:`C_ECHO_RQ`, :data:`C_FIND_RQ`,
    :data:`C_CANCEL_RQ`, ...). A list value is used up one reply per request, then
    ``default``; None answers nothing. Build a fresh one per connection (pass
    ``hostile_peer`` a function of the connection number) when lists are used."""
    queues = {field_: iter(value) for field_, value in replies.items() if isinstance(value, list)}

    def reply(rq: Request) -> Any:
        field_ = rq.command_field
        if field_ in queues:
            return next(queues[field_], default)
        if field_ in replies:
            return replies[field_]
        return default

    return reply


def truncated(data: bytes, keep: int) -> bytes:
    """The first ``keep`` bytes of ``data`` (a PDU whose header promises more than follows)."""
    return data[:keep]


def truncated_reply(reply: Callable[[Request], bytes], keep: int) -> Callable[[Request], list]:
    """A reply: the first ``keep`` bytes of what ``reply`` would send, then :data:`HOLD`."""
    return lambda rq: [truncated(reply(rq), keep), HOLD]


def patient(name: str = "DOE^JOHN", pid: str = "PID1", **more: str) -> Dataset:
    """A small STUDY-level identifier for pending responses."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    ds.PatientID = pid
    ds.StudyInstanceUID = more.pop("StudyInstanceUID", "1.2.3.4")
    for k, v in more.items():
        setattr(ds, k, v)
    return ds


# ----------------------------------------------------------------------------------------------
# the peer
# ----------------------------------------------------------------------------------------------


@dataclass
class Script:
    """What a hostile peer answers on each connection (see the module's docstring)."""

    associate: Reply = field(default_factory=accept)
    messages: list[Reply] = field(default_factory=list)
    then: Reply = HOLD
    release: Reply = (RELEASE_RP_PDU, CLOSE)


class HostilePeer:
    """A running hostile peer: its port, what it received, and errors of its own threads."""

    def __init__(self, script: Script | Callable[[int], Script]) -> None:
        self.script = script
        self.received: list[Request] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._count = itertools.count(1)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port: int = self.listener.getsockname()[1]

    def requests(self, kind: str | None = None, connection: int | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.received
                    if kind in (None, r.kind) and connection in (None, r.connection)]

    @property
    def associations(self) -> int:
        """How many connections sent an A-ASSOCIATE-RQ."""
        return len(self.requests("associate"))

    def _script_for(self, n: int) -> Script:
        return self.script if isinstance(self.script, Script) else self.script(n)

    def serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            n = next(self._count)
            with self._lock:
                self._sockets.append(conn)
            t = threading.Thread(target=self._run, args=(conn, n), name=f"hostile-{n}", daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket, n: int) -> None:
        try:
            _Connection(self, conn, n, self._script_for(n)).run()
        except (OSError, _Closed):
            pass
        except BaseException as exc:  # noqa: BLE001 - kept for the test to look at
            self.errors.append(exc)
        finally:
            conn.close()

    def record(self, request: Request) -> None:
        with self._lock:
            self.received.append(request)

    def close(self) -> None:
        self.stop.set()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.listener.close()
        for t in self._threads:
            t.join(2)


class _Closed(Exception):
    """The connection is over (the script closed it, the client left, or the peer stopped)."""


class _Connection:
    """One accepted connection running a script."""

    def __init__(self, peer: HostilePeer, sock: socket.socket, number: int, script: Script) -> None:
        self.peer, self.sock, self.number, self.script = peer, sock, number, script
        self.buf = bytearray()
        self.pending: list[Request] = []  # parsed, not yet answered
        self.command = bytearray()
        self.dataset = bytearray()
        self.command_done: dict[int, bytes] | None = None
        self.context_id: int | None = None
        self.replies = iter(script.messages)
        self.holding = False

    def run(self) -> None:
        while not self.peer.stop.is_set():
            while self.pending:
                self.answer(self.pending.pop(0))
            self.receive(0.05)

    # -- reading ---------------------------------------------------------------------------
    def receive(self, wait: float) -> None:
        """Read what arrived within ``wait`` seconds and parse whole PDUs out of it."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise _Closed
        self.buf += data
        while len(self.buf) >= 6:
            pdu_type, _, length = struct.unpack_from(">BBI", self.buf)
            if len(self.buf) < 6 + length:
                return
            raw = bytes(self.buf[:6 + length])
            del self.buf[:6 + length]
            self.parse(pdu_type, raw)

    def parse(self, pdu_type: int, raw: bytes) -> None:
        if pdu_type == ASSOCIATE_RQ:
            rq = A_ASSOCIATE_RQ()
            rq.decode(raw)
            self.queue(Request("associate", self.number, raw, associate=rq))
        elif pdu_type == P_DATA_TF:
            self.take_p_data(raw)
        elif pdu_type == RELEASE_RQ:
            self.queue(Request("release", self.number, raw))
        elif pdu_type == ABORT:
            self.peer.record(Request("abort", self.number, raw))
            raise _Closed
        else:
            self.queue(Request(f"pdu-0x{pdu_type:02x}", self.number, raw))

    def take_p_data(self, raw: bytes) -> None:
        pos = 6
        while pos + 6 <= len(raw):
            length, cx, control = struct.unpack_from(">IBB", raw, pos)
            fragment = raw[pos + 6:pos + 4 + length]
            pos += 4 + length
            self.context_id = cx
            if control & 0x01:
                self.command += fragment
                if control & 0x02:
                    self.command_done = parse_command(bytes(self.command))
                    self.command.clear()
                    if struct.unpack("<H", self.command_done.get(DATA_SET_TYPE, us(NO_DATA_SET))[:2])[0] == NO_DATA_SET:
                        self.message(raw)
            else:
                self.dataset += fragment
                if control & 0x02:
                    self.message(raw)

    def message(self, raw: bytes) -> None:
        self.queue(Request("message", self.number, raw, context_id=self.context_id,
                           command=self.command_done or {}, dataset=bytes(self.dataset)))
        self.command_done = None
        self.dataset.clear()

    def queue(self, request: Request) -> None:
        self.peer.record(request)
        self.pending.append(request)

    # -- answering -------------------------------------------------------------------------
    def answer(self, request: Request) -> None:
        if self.holding:
            return
        if request.kind == "associate":
            self.send(self.script.associate, request)
        elif request.kind == "release":
            self.send(self.script.release, request)
        elif request.kind == "message":
            self.send(next(self.replies, self.script.then), request)

    def send(self, reply: Reply, request: Request) -> None:
        while callable(reply) and not isinstance(reply, _Action):
            reply = reply(request)
        if reply is None:
            return
        if isinstance(reply, (bytes, bytearray)):
            self.sock.sendall(reply)
        elif reply is HOLD:
            self.holding = True
        elif reply is CLOSE:
            raise _Closed
        elif reply is RESET:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise _Closed
        elif isinstance(reply, (int, float)):
            self.pause(reply)
        else:
            for item in reply:
                if self.peer.stop.is_set():
                    raise _Closed
                self.send(item, request)
                if self.holding:
                    return

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.receive(min(left, 0.05))


@contextmanager
def hostile_peer(script: Script | Callable[[int], Script] | None = None) -> Iterator[HostilePeer]:
    """A hostile peer on 127.0.0.1:<free port> running ``script`` on every connection (or
    ``script(n)`` on the n-th). Leaving the block closes every connection it holds."""
    peer = HostilePeer(script or Script())
    thread = threading.Thread(target=peer.serve, name="hostile-accept", daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.close()
        thread.join(2)
