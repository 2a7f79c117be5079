"""The temporary Store SCP: where the PACS sends the images of a C-MOVE, and what keeps them.

A C-MOVE makes the PACS open a second association, *to us*. Whether that association ever
arrives, from where, under which AE titles, and what our side answered is exactly what a
workstation never shows. :class:`StoreSCP` listens only while a retrieve check runs and records
every inbound TCP connection and association attempt, accepted or not, with the peer's address
and titles. It accepts any called AE title (the check notes when it is not the move destination
it named), every storage SOP class pynetdicom knows with every transfer syntax, compressed ones
included, and several associations at once.

Why not pynetdicom's association server? Its reactors poll (a 1 ms sleep per loop in the DUL
and in the acceptor thread), which costs several milliseconds per C-STORE and made it about
three times slower than DCMTK's ``storescp`` on the same C-MOVE. Here each connection is one
thread doing blocking reads: the A-ASSOCIATE-RQ is decoded, negotiated and answered with
pynetdicom's own PDU classes and negotiation (``negotiate_as_acceptor``); the few command-set
elements of C-STORE and C-ECHO are read and written directly, and each data set is streamed to
its file fragment by fragment as it arrives, never decoded.

:class:`Receiver` keeps the objects: one file per object with its file meta information, and the
numbers about the arrivals (time to first object, rate, longest pause). The C-GET check uses its
pynetdicom event handler on its own association.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.uid import UID
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
    build_context,
)
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import negotiate_as_acceptor
from pynetdicom.sop_class import Verification

from qrdoctor.dicom.find import _command, parse_command
from qrdoctor.dicom.probe import Rejection

log = logging.getLogger("qrdoctor.dicom.storescp")

PREAMBLE = b"\x00" * 128 + b"DICM"
MAX_INBOUND_KEPT = 50  # connection records kept in full; later ones are only counted
STORE_MAX_PDU = 1 << 20  # the largest PDU we tell the PACS it may send us
MAX_ASSOCIATIONS = 16  # simultaneous inbound associations; more are rejected 2/3/2
IDLE_TIMEOUT = 60.0  # an inbound association silent for this long is aborted
_UID_FILE = re.compile(r"^[0-9.]{1,64}$")
_IMPLEMENTATION_VERSION = "QRDOCTOR"
CONTEXT_RESULTS = {
    1: "user-rejection",
    2: "no-reason (provider rejection)",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}
RELEASE_RP = bytes.fromhex("06000000000400000000")
ABORT = bytes.fromhex("07000000000400000000")

# What we accept: every storage SOP class with every transfer syntax, and Verification.
SUPPORTED_CONTEXTS = [build_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
                      for cx in AllStoragePresentationContexts]
SUPPORTED_CONTEXTS.append(build_context(Verification, ALL_TRANSFER_SYNTAXES[:3]))


class StorePortError(OSError):
    """The Store SCP could not listen on the address and port asked for."""


def uid_name(uid: str) -> str:
    """A readable name for a UID (``CT Image Storage``), or the UID itself."""
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001 - a malformed UID from the peer is shown as it came
        return uid
    return name if name and name != uid else uid


def _ui(group: int, elem: int, vr: bytes, value: str, pad: bytes = b"\x00") -> bytes:
    raw = value.encode("ascii", "replace")
    if len(raw) % 2:
        raw += pad
    return struct.pack("<HH2sH", group, elem, vr, len(raw)) + raw


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str,
              source_ae: str | None = None) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1) for a received data set."""
    body = b"".join([
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
        _ui(0x0002, 0x0002, b"UI", sop_class),
        _ui(0x0002, 0x0003, b"UI", sop_instance),
        _ui(0x0002, 0x0010, b"UI", transfer_syntax),
        _ui(0x0002, 0x0012, b"UI", str(PYNETDICOM_IMPLEMENTATION_UID)),
        _ui(0x0002, 0x0013, b"SH", _IMPLEMENTATION_VERSION, b" "),
        _ui(0x0002, 0x0016, b"AE", source_ae, b" ") if source_ae else b"",
    ])
    return PREAMBLE + struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


# ----------------------------------------------------------------------------------------------
# keeping objects
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Received:
    """One object that arrived (what its C-STORE request said about it, and when)."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    size: int
    at: float  # time.monotonic()
    connection: int  # Inbound.number, or 0 on a C-GET association
    move_originator_ae: str | None = None
    move_originator_id: int | None = None


class Receiver:
    """Keeps what arrives by C-STORE: a file per object, and the numbers about the arrivals.

    Thread-safe: the sub-operations of a C-MOVE may come in on several associations at once.
    """

    def __init__(self, directory: Path | str | None = None, keep: bool = False) -> None:
        """Files go to ``directory`` (a new temporary directory when None). :meth:`discard`
        deletes them at the end unless ``keep`` is true (and a directory was given)."""
        self.keep = bool(keep and directory is not None)
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="qrdoctor-retrieve-"))
            self._made_directory = True
        else:
            self.directory = Path(directory)
            self._made_directory = not self.directory.exists()
            self.directory.mkdir(parents=True, exist_ok=True)
        self.objects: list[Received] = []
        self.duplicates = 0
        self.write_errors: list[str] = []
        self.started = time.monotonic()
        self.last_activity = self.started
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def discard(self) -> None:
        """Delete the received files (and the temporary directory) unless they are kept."""
        if self.keep:
            return
        if self._made_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            for f in self.directory.glob("*.dcm"):
                f.unlink(missing_ok=True)

    def mark_start(self) -> None:
        """The moment the retrieve request left: the time to the first object counts from here."""
        self.started = self.last_activity = time.monotonic()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def path_for(self, uid: str) -> Path:
        name = uid if _UID_FILE.match(uid) else f"object-{abs(hash(uid)):x}"
        return self.directory / f"{name}.dcm"

    def open_object(self, uid: str, sop_class: str, transfer_syntax: str,
                    source_ae: str | None = None) -> BinaryIO:
        """A file to stream one data set into, its file meta information already written."""
        f = open(self.path_for(uid), "wb")  # noqa: SIM115 - closed by the caller
        f.write(file_meta(sop_class, uid, transfer_syntax, source_ae))
        return f

    def add(self, record: Received) -> None:
        with self._lock:
            if record.sop_instance_uid in self._seen:
                self.duplicates += 1
            self._seen.add(record.sop_instance_uid)
            self.objects.append(record)
            self.last_activity = record.at

    def failed_write(self, uid: str, exc: BaseException) -> None:
        with self._lock:
            self.write_errors.append(f"{uid}: {type(exc).__name__}: {exc}")
            self.last_activity = time.monotonic()
        log.debug("C-STORE of %s could not be written: %s", uid, exc)

    def handle_store(self, event: Any) -> int:
        """pynetdicom EVT_C_STORE handler (the C-GET association): keep the data set as sent."""
        req = event.request
        uid = str(req.AffectedSOPInstanceUID or "")
        sop_class = str(req.AffectedSOPClassUID or "")
        ts = str(event.context.transfer_syntax)
        try:
            with req.DataSet.getbuffer() as body, self.open_object(uid, sop_class, ts) as f:
                f.write(body)
                size = len(body)
        except OSError as exc:
            self.failed_write(uid, exc)
            return 0xA700  # Refused: out of resources
        self.add(Received(uid, sop_class, ts, size, time.monotonic(), 0))
        return 0x0000

    # -- what arrived ------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.objects)

    def uids(self) -> set[str]:
        with self._lock:
            return set(self._seen)

    def stats(self) -> dict:
        """Time to first object, rate, volume and the longest pause between two objects."""
        with self._lock:
            objects = list(self.objects)
        out: dict[str, Any] = {
            "objects": len(objects),
            "bytes": sum(o.size for o in objects),
            "time_to_first_object_ms": None,
            "receive_s": None,
            "objects_per_s": None,
            "mb_per_s": None,
            "longest_pause_ms": None,
        }
        if not objects:
            return out
        objects.sort(key=lambda o: o.at)
        times = [o.at for o in objects]
        out["time_to_first_object_ms"] = round((times[0] - self.started) * 1000, 1)
        span = times[-1] - times[0]
        out["receive_s"] = round(span, 3)
        if len(times) > 1 and span > 0:
            # after the first object, n-1 objects arrive in `span` seconds
            out["objects_per_s"] = round((len(times) - 1) / span, 1)
            out["mb_per_s"] = round((out["bytes"] - objects[0].size) / span / 1e6, 2)
            out["longest_pause_ms"] = round(max(b - a for a, b in zip(times, times[1:], strict=False)) * 1000, 1)
        out["transfer_syntaxes"] = dict(Counter(uid_name(o.transfer_syntax) for o in objects))
        out["sop_classes"] = dict(Counter(uid_name(o.sop_class_uid) for o in objects))
        originators = Counter((o.move_originator_ae, o.move_originator_id) for o in objects)
        out["move_originators"] = [{"ae_title": ae, "message_id": mid, "objects": n}
                                   for (ae, mid), n in originators.items()]
        if self.duplicates:
            out["duplicates"] = self.duplicates
        if self.write_errors:
            out["write_errors"] = self.write_errors[:5]
        return out


# ----------------------------------------------------------------------------------------------
# the listening side
# ----------------------------------------------------------------------------------------------


@dataclass
class Inbound:
    """One inbound TCP connection to the Store SCP and what became of it."""

    number: int
    address: str
    port: int
    opened_ms: float  # since the SCP started listening
    calling_ae: str | None = None
    called_ae: str | None = None
    result: str = "connected"  # connected | accepted | rejected | aborted | closed | not-dicom
    rejection: Rejection | None = None
    accepted_contexts: int = 0
    rejected_contexts: list[dict] = field(default_factory=list)
    stores: int = 0
    store_failures: int = 0
    echoes: int = 0
    detail: str = ""
    ended: str = ""  # released | aborted by peer | closed | idle timeout | stopped
    closed_ms: float | None = None

    @property
    def requested(self) -> bool:
        """The peer sent an A-ASSOCIATE-RQ (not just a TCP connection)."""
        return self.calling_ae is not None

    def describe(self) -> str:
        """One line for the protocol transcript."""
        parts = [f"connection {self.number} from {self.address}:{self.port}"]
        if self.requested:
            parts.append(f"calling AE {self.calling_ae}, called AE {self.called_ae}")
        parts.append(self.result if self.rejection is None else f"rejected {self.rejection.triple}")
        if self.rejected_contexts:
            parts.append(f"{len(self.rejected_contexts)} context(s) refused")
        if self.stores or self.store_failures:
            parts.append(f"{self.stores} object(s), {self.store_failures} refused")
        if self.ended:
            parts.append(self.ended)
        return ", ".join(parts)

    def evidence(self) -> dict:
        ev: dict[str, Any] = {"connection": self.number, "from": f"{self.address}:{self.port}",
                              "opened_ms": self.opened_ms, "result": self.result}
        if self.calling_ae is not None:
            ev["calling_ae"] = self.calling_ae
            ev["called_ae"] = self.called_ae
        if self.rejection is not None:
            ev["rejection"] = self.rejection.describe()
        if self.result == "accepted" or self.accepted_contexts:
            ev["accepted_contexts"] = self.accepted_contexts
        if self.rejected_contexts:
            ev["rejected_contexts"] = self.rejected_contexts
        if self.stores or self.store_failures:
            ev["objects"] = self.stores
        if self.store_failures:
            ev["store_failures"] = self.store_failures
        if self.echoes:
            ev["echoes"] = self.echoes
        if self.detail:
            ev["detail"] = self.detail
        if self.ended:
            ev["ended"] = self.ended
        if self.closed_ms is not None:
            ev["closed_ms"] = self.closed_ms
        return ev


class _Closed(Exception):
    pass


class StoreSCP:
    """A Storage SCP on ``host:port`` for the duration of one retrieve check.

    ``ae_title`` is the move destination named in the C-MOVE; any called AE title is accepted
    and recorded. Received files go to ``directory`` (a new temporary directory when None),
    which :meth:`stop` deletes unless ``keep`` is true.
    """

    def __init__(self, ae_title: str, host: str = "0.0.0.0", port: int = 0,
                 directory: Path | str | None = None, keep: bool = False,
                 max_associations: int = MAX_ASSOCIATIONS) -> None:
        self.ae_title = ae_title
        self.host = host
        self.requested_port = port
        self.max_associations = max_associations
        self.receiver = Receiver(directory, keep)
        self.connections = 0
        self._records: list[Inbound] = []
        self._active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._t0 = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> StoreSCP:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
            sock.listen(32)
        except OSError as exc:
            sock.close()
            self._cleanup()
            raise StorePortError(exc.errno, exc.strerror or str(exc)) from exc
        sock.settimeout(0.1)
        self._sock = sock
        self._t0 = time.monotonic()
        t = threading.Thread(target=self._accept_loop, name=f"qrdoctor-storescp-{self.port}", daemon=True)
        t.qrdoctor_server = True  # type: ignore[attr-defined]  # keeps its log out of transcripts
        t.start()
        self._threads.append(t)
        log.debug("Store SCP %s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    @property
    def port(self) -> int:
        if self._sock is not None:
            return int(self._sock.getsockname()[1])
        return self.requested_port

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def stop(self, grace: float = 1.0) -> None:
        """Stop listening, end inbound associations still open, delete the files unless kept."""
        if self._sock is not None:
            # A PACS releases its association right after the last C-STORE response: give it
            # a moment to do so before the connections are cut.
            deadline = time.monotonic() + grace
            while self._active and time.monotonic() < deadline:
                time.sleep(0.01)
            self._stop.set()
            with self._lock:
                for conn in list(self._open):
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            for t in self._threads:
                t.join(2.0)
            self._sock.close()
            self._sock = None
        self._cleanup()

    def _cleanup(self) -> None:
        self.receiver.discard()

    @property
    def directory(self) -> Path:
        return self.receiver.directory

    @property
    def keep(self) -> bool:
        return self.receiver.keep

    def __enter__(self) -> StoreSCP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what happened -----------------------------------------------------------------------
    def records(self) -> list[Inbound]:
        with self._lock:
            return list(self._records)

    @property
    def associations_requested(self) -> int:
        """Inbound A-ASSOCIATE-RQs (connections that got as far as naming AE titles)."""
        return sum(1 for r in self.records() if r.requested)

    # -- serving -----------------------------------------------------------------------------
    def _ms(self) -> float:
        return round((time.monotonic() - self._t0) * 1000, 1)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, address = self._sock.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                break
            with self._lock:
                self.connections += 1
                rec = Inbound(self.connections, str(address[0]), int(address[1]), self._ms())
                if len(self._records) < MAX_INBOUND_KEPT:
                    self._records.append(rec)
                self._open.add(conn)
                self._active += 1
            self.receiver.touch()
            t = threading.Thread(target=self._serve, args=(conn, rec), daemon=True,
                                 name=f"qrdoctor-storescp-conn-{rec.number}")
            t.qrdoctor_server = True  # type: ignore[attr-defined]
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket, rec: Inbound) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Connection(self, conn, rec).run()
        except _Closed as exc:
            rec.ended = rec.ended or str(exc) or "closed"
            if rec.result == "connected":
                rec.result = "closed"
        except Exception as exc:  # noqa: BLE001 - one bad peer must not stop the SCP
            rec.detail = f"{type(exc).__name__}: {exc}"
            rec.ended = rec.ended or "error"
            try:
                conn.sendall(ABORT)
            except OSError:
                pass
        finally:
            rec.closed_ms = self._ms()
            with self._lock:
                self._open.discard(conn)
                self._active -= 1
            try:
                conn.close()
            except OSError:
                pass


class _Connection:
    """One inbound association, served with blocking reads."""

    def __init__(self, scp: StoreSCP, conn: socket.socket, rec: Inbound) -> None:
        self.scp, self.conn, self.rec = scp, conn, rec
        self.receiver = scp.receiver
        self.contexts: dict[int, tuple[str, str]] = {}  # id -> (abstract syntax, transfer syntax)
        self.peer_max_pdu = 16384
        self.command = bytearray()
        self.elements: dict[int, bytes] | None = None
        self.out: BinaryIO | None = None
        self.size = 0

    # -- bytes -------------------------------------------------------------------------------
    def _recv_exact(self, n: int, deadline: float) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            if self.scp._stop.is_set():
                raise _Closed("stopped")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Closed("idle timeout")
            self.conn.settimeout(min(remaining, 1.0))
            try:
                k = self.conn.recv_into(view[got:], n - got)
            except TimeoutError:
                continue
            except OSError as exc:
                raise _Closed(f"connection error: {exc}") from None
            if k == 0:
                raise _Closed("closed")
            got += k
        return buf

    def _read_pdu(self) -> tuple[int, bytearray]:
        deadline = time.monotonic() + IDLE_TIMEOUT
        header = self._recv_exact(6, deadline)
        pdu_type = header[0]
        (length,) = struct.unpack_from(">I", header, 2)
        if pdu_type not in range(1, 8) or length > (1 << 26):
            raise ValueError(f"not a DICOM PDU (type 0x{pdu_type:02X}, length {length})")
        return pdu_type, self._recv_exact(length, deadline)

    # -- association -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            pdu_type, body = self._read_pdu()
        except ValueError as exc:
            self.rec.result = "not-dicom"
            self.rec.detail = str(exc)
            raise _Closed("not DICOM") from None
        if pdu_type != 0x01:
            raise ValueError(f"expected an A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
        if not self._associate(body):
            return
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type == 0x04:
                self._p_data(body)
            elif pdu_type == 0x05:
                self.conn.sendall(RELEASE_RP)
                self.rec.ended = "released"
                return
            elif pdu_type == 0x07:
                self.rec.result = "aborted" if self.rec.result != "accepted" else self.rec.result
                self.rec.ended = "aborted by the peer"
                return
            else:
                raise ValueError(f"unexpected PDU type 0x{pdu_type:02X}")

    def _associate(self, body: bytearray) -> bool:
        rq = A_ASSOCIATE_RQ()
        rq.decode(bytes([0x01, 0x00]) + struct.pack(">I", len(body)) + bytes(body))
        prim = rq.to_primitive()
        rec = self.rec
        rec.calling_ae = str(prim.calling_ae_title).strip()
        rec.called_ae = str(prim.called_ae_title).strip()
        roles: dict = {}
        for item in prim.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max_pdu = item.maximum_length_received or 0
            elif isinstance(item, SCP_SCU_RoleSelectionNegotiation):
                roles[item.sop_class_uid] = (item.scu_role, item.scp_role)
        with self.scp._lock:
            busy = self.scp._active > self.scp.max_associations
        if busy:
            rj = Rejection(2, 3, 2)  # transient, presentation provider, local limit exceeded
            self.conn.sendall(bytes([0x03, 0, 0, 0, 0, 4, 0, rj.result, rj.source, rj.reason]))
            rec.result, rec.rejection = "rejected", rj
            rec.ended = "rejected"
            return False
        results, ac_roles = negotiate_as_acceptor(
            prim.presentation_context_definition_list, SUPPORTED_CONTEXTS, roles or None)
        for cx in results:
            if cx.result == 0 and cx.transfer_syntax:
                self.contexts[int(cx.context_id)] = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            else:
                asked = next((p for p in prim.presentation_context_definition_list
                              if p.context_id == cx.context_id), None)
                abstract = str(asked.abstract_syntax) if asked is not None else ""
                rec.rejected_contexts.append({
                    "abstract_syntax": abstract,
                    "name": uid_name(abstract),
                    "result": cx.result,
                    "result_str": CONTEXT_RESULTS.get(cx.result or 0, f"result {cx.result}"),
                    "transfer_syntaxes": [uid_name(str(ts)) for ts in (asked.transfer_syntax if asked else [])][:8],
                })
        rec.accepted_contexts = len(self.contexts)
        ac = A_ASSOCIATE()
        ac.application_context_name = prim.application_context_name
        ac.calling_ae_title = prim.calling_ae_title
        ac.called_ae_title = prim.called_ae_title
        ac.result = 0x00
        ac.presentation_context_definition_results_list = results
        max_len = MaximumLengthNotification()
        max_len.maximum_length_received = STORE_MAX_PDU
        impl = ImplementationClassUIDNotification()
        impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
        ver = ImplementationVersionNameNotification()
        ver.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
        ac.user_information = [max_len, impl, ver, *ac_roles]
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(ac)
        self.conn.sendall(pdu.encode())
        rec.result = "accepted"
        return True

    # -- DIMSE -------------------------------------------------------------------------------
    def _p_data(self, body: bytearray) -> None:
        view = memoryview(body)
        pos, end = 0, len(body)
        while pos + 6 <= end:
            (length,) = struct.unpack_from(">I", body, pos)
            context_id, flags = body[pos + 4], body[pos + 5]
            fragment = view[pos + 6:pos + 4 + length]
            pos += 4 + length
            last = bool(flags & 0x02)
            if flags & 0x01:
                self.command += fragment
                if last:
                    self.elements = parse_command(bytes(self.command))
                    self.command = bytearray()
                    self._command_complete(context_id)
            else:
                self._data(context_id, fragment, last)

    def _text(self, element: int) -> str:
        assert self.elements is not None
        return self.elements.get(element, b"").rstrip(b"\x00 ").decode("ascii", "replace")

    def _command_complete(self, context_id: int) -> None:
        assert self.elements is not None
        field_ = struct.unpack("<H", self.elements.get(0x0100, b"\x00\x00")[:2])[0]
        has_data = struct.unpack("<H", self.elements.get(0x0800, b"\x01\x01")[:2])[0] != 0x0101
        if field_ == 0x0030:  # C-ECHO-RQ
            self.rec.echoes += 1
            self._respond(context_id, 0x8030, 0x0000)
            return
        if field_ != 0x0001 or not has_data:
            raise ValueError(f"unsupported DIMSE command 0x{field_:04X} on the Store SCP")
        uid = self._text(0x1000)
        sop_class = self._text(0x0002)
        _abstract, ts = self.contexts.get(context_id, ("", ""))
        self.size = 0
        try:
            self.out = self.receiver.open_object(uid, sop_class, ts, self.rec.calling_ae)
        except OSError as exc:
            self.receiver.failed_write(uid, exc)
            self.out = None

    def _data(self, context_id: int, fragment: memoryview, last: bool) -> None:
        if self.elements is None:
            raise ValueError("data set fragment without a command")
        if self.out is not None:
            try:
                self.out.write(fragment)
            except OSError as exc:
                self.receiver.failed_write(self._text(0x1000), exc)
                self.out.close()
                self.out = None
        self.size += len(fragment)
        if not last:
            return
        uid = self._text(0x1000)
        if self.out is None or context_id not in self.contexts:
            status = 0xA700 if self.out is None else 0x0122
            self.rec.store_failures += 1
        else:
            self.out.close()
            originator_id = self.elements.get(0x1031)
            self.receiver.add(Received(
                uid, self._text(0x0002), self.contexts[context_id][1], self.size, time.monotonic(),
                self.rec.number, self._text(0x1030) or None,
                struct.unpack("<H", originator_id[:2])[0] if originator_id else None,
            ))
            self.rec.stores += 1
            status = 0x0000
        self.out = None
        self._respond(context_id, 0x8001, status)

    def _respond(self, context_id: int, command_field: int, status: int) -> None:
        assert self.elements is not None
        message_id = self.elements.get(0x0110, b"\x00\x00")[:2]
        items = [
            (0x0002, self.elements.get(0x0002, b"")),
            (0x0100, struct.pack("<H", command_field)),
            (0x0120, message_id),
            (0x0800, struct.pack("<H", 0x0101)),
            (0x0900, struct.pack("<H", status)),
        ]
        if command_field == 0x8001:
            items.append((0x1000, self.elements.get(0x1000, b"")))
        command = _command(items)
        pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
        self.conn.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
        self.elements = None
