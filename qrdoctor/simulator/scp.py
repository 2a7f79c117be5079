"""The DIMSE side of the simulated PACS: C-FIND, C-MOVE and C-GET on pynetdicom associations.

pynetdicom's own Q/R service class decides the final statuses and counts of C-MOVE/C-GET itself
(and answers an unreachable destination with 0xA801), which would hide exactly the behaviours
the simulator has to reproduce. So the server here hooks the association's request dispatch:
C-FIND/C-MOVE/C-GET requests on a Q/R presentation context are served by :class:`QRService`,
which sends every response itself; everything else (C-ECHO, C-STORE) stays with pynetdicom.
The hook (:func:`qrdoctor.dicom.compat.route_requests`, the one place that reaches into
pynetdicom's internals) is installed per association of our own server when its connection
opens, so pynetdicom clients in the same process are untouched, and no global pynetdicom
configuration is changed.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.status import code_to_category
from pynetdicom.transport import ThreadedAssociationServer

from qrdoctor.dicom import compat, pdu
from qrdoctor.simulator.data import Archive, Instance
from qrdoctor.simulator.matching import (
    LEVELS,
    MODELS,
    FindQuery,
    InformationModel,
    MatchOptions,
    QueryError,
    resolve_retrieve,
)
from qrdoctor.simulator.quirks import Quirks
from qrdoctor.simulator.wire import FindResponseWriter, IdentifierEncoder

# The simulator's sub-associations send C-STOREs with pynetdicom: keep their responses theirs.
compat.keep_responses_for_waiting_senders()

if TYPE_CHECKING:
    from pynetdicom.association import Association

    from qrdoctor.simulator import SimulatedPACS

__all__ = ["QRService", "SimAssociationServer"]

LOGGER = logging.getLogger("qrdoctor.simulator")

STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_PENDING_WARNING = 0xFF01
STATUS_CANCEL = 0xFE00
STATUS_NOT_AUTHORISED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_OUT_OF_RESOURCES_MATCHES = 0xA701
STATUS_OUT_OF_RESOURCES_SUBOPS = 0xA702
STATUS_MOVE_DESTINATION_UNKNOWN = 0xA801
STATUS_SUBOPS_WARNING = 0xB000
STATUS_RESPONSE_LIMIT = 0xB001
STATUS_UNABLE_TO_PROCESS = 0xC000

PENDING_FOREVER_INTERVAL = 0.5  # seconds between the pending responses of pending-forever
PENDING_FOREVER_LIMIT = 600.0  # ... and a safety stop for a client that never gives up
_MAX_SUBOPS = 65535


class _Aborted(Exception):
    """The requesting association went away while we were answering."""


class _Request:
    """One request being served: association, context, response primitive and helpers."""

    def __init__(self, service: QRService, assoc: Association, msg: Any, context: Any,
                 model: InformationModel) -> None:
        self.service = service
        self.assoc = assoc
        self.msg = msg
        self.context = context
        self.model = model
        self.cx_id = int(context.context_id)
        ts = context.transfer_syntax[0]
        self.ts = ts
        self.explicit = not ts.is_implicit_VR

    @property
    def calling_ae(self) -> str:
        return str(self.assoc.requestor.ae_title).strip()

    def alive(self) -> bool:
        assoc = self.assoc
        return not (
            self.service.stopping.is_set()
            or not assoc.is_established
            or assoc.acse.is_aborted()
            or not assoc.dul.is_alive()
        )

    def cancelled(self) -> bool:
        cancels = self.assoc.dimse.cancel_req
        if cancels and self.msg.MessageID in cancels:
            del cancels[self.msg.MessageID]
            return True
        return False

    def wait(self) -> None:
        """The ``slow`` quirk: pause before a response (interrupted by stop())."""
        delay = self.service.quirks.slow
        if delay:
            self.service.stopping.wait(delay)
        if not self.alive():
            raise _Aborted

    def decode_identifier(self) -> Dataset:
        ts = self.ts
        ds = decode(self.msg.Identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        if ds is None:
            raise QueryError(STATUS_UNABLE_TO_PROCESS, "Unable to decode the identifier")
        return ds

    def encode_identifier(self, ds: Dataset) -> BytesIO:
        ts = self.ts
        return BytesIO(encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated))

    def send(self, rsp: Any) -> None:
        self.assoc.dimse.send_msg(rsp, self.cx_id)


class QRService:
    """Serves C-FIND, C-MOVE and C-GET for one :class:`~qrdoctor.simulator.SimulatedPACS`."""

    def __init__(self, pacs: SimulatedPACS) -> None:
        self.pacs = pacs
        self.stopping = threading.Event()
        self._msg_id_lock = threading.Lock()
        self._msg_id = 0

    @property
    def quirks(self) -> Quirks:
        return self.pacs.quirks

    @property
    def archive(self) -> Archive:
        return self.pacs.archive

    def match_options(self) -> MatchOptions:
        q = self.quirks
        return MatchOptions(
            case_sensitive_pn=q.case_sensitive_pn,
            family_name_wildcards=q.family_name_wildcards,
            question_mark=not q.no_question_mark,
            open_ranges=not q.no_open_ranges,
            empty_keys=q.empty_keys,
        )

    def _next_msg_id(self) -> int:
        with self._msg_id_lock:
            self._msg_id = self._msg_id % 65535 + 1
            return self._msg_id

    # ---- dispatch -----------------------------------------------------------------------------

    def on_connection(self, event: Any) -> None:
        """EVT_CONN_OPEN of each acceptor association, before it runs: route its Q/R requests
        to us, send small PDUs at once, and keep pynetdicom's per-PDU logging off."""
        _no_delay(event)  # without it each small response waits for the client's delayed ACK
        self.install(event.assoc)

    def install(self, assoc: Association) -> None:
        """Route this association's Q/R requests to us."""

        def serve(msg: Any, context_id: int) -> bool:
            return isinstance(msg, (C_FIND, C_MOVE, C_GET)) and self._serve(assoc, msg, context_id)

        compat.route_requests(assoc, serve)
        if not self.pacs.protocol_log:
            unbind_standard_logging(assoc)

    def _serve(self, assoc: Association, msg: Any, context_id: int) -> bool:
        """Serve a Q/R request; False to leave it to pynetdicom."""
        if not msg.is_valid_request:
            return False
        context = next((cx for cx in assoc.accepted_contexts if cx.context_id == context_id), None)
        if context is None or context.abstract_syntax not in MODELS:
            return False
        model, operation = MODELS[context.abstract_syntax]
        expected = {"FIND": C_FIND, "MOVE": C_MOVE, "GET": C_GET}[operation]
        if not isinstance(msg, expected):
            return False  # e.g. a C-MOVE on a FIND context: pynetdicom's handling applies
        request = _Request(self, assoc, msg, context, model)
        handler: Callable[[_Request], None] = {
            "FIND": self._find, "MOVE": self._move, "GET": self._get}[operation]
        assoc.dimse.cancel_req = {}
        try:
            LOGGER.debug("%s C-%s from %s", model.name, operation, request.calling_ae)
            if self._refuse_unknown(request, operation):
                return True
            handler(request)
        except _Aborted:
            LOGGER.debug("association ended while serving C-%s", operation)
        except Exception:  # a bug here must not kill the association thread silently
            LOGGER.exception("simulator failed to serve C-%s", operation)
            try:
                rsp = self._response(request)
                rsp.Status = STATUS_UNABLE_TO_PROCESS
                rsp.ErrorComment = "Simulator internal error"
                request.send(rsp)
            except Exception:  # pragma: no cover - best effort only
                pass
        finally:
            assoc.dimse.cancel_req = {}
        return True

    def _response(self, request: _Request) -> Any:
        cls = {C_FIND: C_FIND, C_MOVE: C_MOVE, C_GET: C_GET}[type(request.msg)]
        rsp = cls()
        rsp.MessageIDBeingRespondedTo = request.msg.MessageID
        rsp.AffectedSOPClassUID = request.msg.AffectedSOPClassUID
        return rsp

    def _refuse_unknown(self, request: _Request, operation: str) -> bool:
        policy = self.quirks.unknown_ae_policy
        if policy is None or request.calling_ae in self.pacs.known_aes:
            return False
        LOGGER.info("refusing C-%s from unknown AE %s (%s)", operation, request.calling_ae, policy)
        if policy == "abort":
            request.assoc.abort(block=False)
            return True
        rsp = self._response(request)
        rsp.Status = STATUS_NOT_AUTHORISED
        rsp.ErrorComment = f"AE {request.calling_ae} not authorised for C-{operation}"[:64]
        request.wait()
        request.send(rsp)
        return True

    def _send_error(self, request: _Request, rsp: Any, error: QueryError) -> None:
        rsp.Status = error.status
        rsp.ErrorComment = error.comment
        if error.offending:
            rsp.OffendingElement = error.offending
        request.wait()
        request.send(rsp)

    # ---- C-FIND -------------------------------------------------------------------------------

    def _find(self, request: _Request) -> None:
        rsp = self._response(request)
        try:
            query = FindQuery(self.archive, request.model, request.decode_identifier(),
                              self.match_options())
        except QueryError as error:
            LOGGER.info("C-FIND refused: %s", error.comment)
            self._send_error(request, rsp, error)
            return
        encoder = IdentifierEncoder(
            query.return_keys, explicit=request.explicit, level=LEVELS[query.level],
            retrieve_ae=self.pacs.ae_title, charset_requested=query.charset_requested,
            empty_keys=self.quirks.empty_keys, omit_charset=self.quirks.charset_missing,
            utf8_as_latin1=self.quirks.charset_utf8_as_latin1,
        )
        pending = STATUS_PENDING_WARNING if query.unsupported_keys else STATUS_PENDING
        cap = self.quirks.find_cap
        cap_kind, cap_n = cap if cap else ("", 0)

        if cap_kind == "cap-refuse":
            total = query.count()
            if total > cap_n:
                LOGGER.info("C-FIND refused: %d matches > cap %d", total, cap_n)
                self._send_error(request, rsp, QueryError(
                    STATUS_OUT_OF_RESOURCES,
                    f"Query count {total} exceeds limit {cap_n}"))
                return

        sent = 0
        send = request.send
        slow = self.quirks.slow
        writer = FindResponseWriter(request.assoc, request.cx_id, request.msg.MessageID,
                                    request.msg.AffectedSOPClassUID, alive=request.alive)
        for row in self._find_rows(query):
            if request.cancelled():
                rsp.Identifier = None
                rsp.Status = STATUS_CANCEL
                request.wait()
                send(rsp)
                return
            if cap and cap_kind != "cap-refuse" and sent >= cap_n:
                LOGGER.info("C-FIND cap %s reached after %d matches", cap_kind, sent)
                if cap_kind == "silent-cap":
                    break
                if cap_kind == "cap-abort":
                    request.assoc.abort(block=False)
                    return
                rsp.Identifier = None
                rsp.Status = STATUS_CANCEL if cap_kind == "cap-cancel" else STATUS_RESPONSE_LIMIT
                request.wait()
                send(rsp)
                return
            if slow:
                request.wait()
            elif sent % 64 == 0 and not request.alive():
                return
            identifier = encoder.encode(row)
            if not writer.send_pending(pending, identifier):
                rsp.Status = pending
                rsp.Identifier = BytesIO(identifier)
                send(rsp)
            sent += 1
        if not request.alive():
            return
        rsp.Identifier = None
        rsp.Status = STATUS_SUCCESS
        request.wait()
        send(rsp)
        LOGGER.debug("C-FIND done: %d matches", sent)

    def _find_rows(self, query: FindQuery) -> Iterable[Any]:
        """The records a C-FIND answers: with the ``study-row-per-image`` quirk a STUDY-level
        query repeats each study once per image it holds."""
        if not (self.quirks.study_row_per_image and LEVELS[query.level] == "STUDY"):
            return query
        return (study for study in query for _ in range(max(study.num_instances, 1)))

    # ---- C-MOVE / C-GET -----------------------------------------------------------------------

    def _resolve(self, request: _Request, rsp: Any) -> list[Instance] | None:
        try:
            instances = resolve_retrieve(self.archive, request.model, request.decode_identifier())
        except QueryError as error:
            LOGGER.info("C-%s refused: %s", "MOVE" if isinstance(rsp, C_MOVE) else "GET",
                        error.comment)
            self._send_error(request, rsp, error)
            return None
        if len(instances) > _MAX_SUBOPS:
            self._send_error(request, rsp, QueryError(
                STATUS_OUT_OF_RESOURCES_MATCHES, f"{len(instances)} instances is too many"))
            return None
        return instances

    def _final(self, request: _Request, rsp: Any, status: int, completed: int, failed: int,
               warning: int, failed_uids: list[str] | None = None,
               remaining: int | None = None) -> None:
        rsp.Status = status
        rsp.NumberOfRemainingSuboperations = remaining
        rsp.NumberOfCompletedSuboperations = completed
        rsp.NumberOfFailedSuboperations = failed
        rsp.NumberOfWarningSuboperations = warning
        rsp.Identifier = None
        if failed_uids:
            ds = Dataset()
            ds.FailedSOPInstanceUIDList = failed_uids
            rsp.Identifier = request.encode_identifier(ds)
        request.wait()
        request.send(rsp)

    def _fake_outcomes(self, request: _Request, rsp: Any, total: int) -> bool:
        """success-zero, success-all-failed and pending-forever; True when one applied."""
        outcome = self.quirks.move_outcome
        if outcome == "success-zero":
            self._final(request, rsp, STATUS_SUCCESS, 0, 0, 0)
            return True
        if outcome == "success-all-failed":
            self._final(request, rsp, STATUS_SUCCESS, 0, total, 0)
            return True
        if outcome == "pending-forever":
            deadline = time.monotonic() + PENDING_FOREVER_LIMIT
            while request.alive() and time.monotonic() < deadline:
                if request.cancelled():
                    self._final(request, rsp, STATUS_CANCEL, 0, 0, 0, remaining=total)
                    return True
                rsp.Status = STATUS_PENDING
                rsp.Identifier = None
                rsp.NumberOfRemainingSuboperations = total
                rsp.NumberOfCompletedSuboperations = 0
                rsp.NumberOfFailedSuboperations = 0
                rsp.NumberOfWarningSuboperations = 0
                request.wait()
                request.send(rsp)
                self.stopping.wait(PENDING_FOREVER_INTERVAL)
            return True
        return False

    def _run_suboperations(self, request: _Request, rsp: Any, instances: list[Instance],
                           store: Callable[[Dataset, int], int | None],
                           store_alive: Callable[[], bool]) -> None:
        """Send each instance with ``store``; pending responses after each; final counts."""
        total = len(instances)
        completed = failed = warning = 0
        failed_uids: list[str] = []
        for index, instance in enumerate(instances):
            if request.cancelled():
                self._final(request, rsp, STATUS_CANCEL, completed, failed, warning,
                            failed_uids, remaining=total - index)
                return
            if not request.alive():
                raise _Aborted
            status: int | None = None
            if store_alive():
                try:
                    status = store(self.archive.dataset(instance), self._next_msg_id())
                except Exception as exc:  # no accepted context, association gone, ...
                    LOGGER.info("C-STORE sub-operation failed: %s", exc)
            category = code_to_category(status) if status is not None else "Failure"
            if category == "Success":
                completed += 1
            elif category == "Warning":
                warning += 1
            else:
                failed += 1
                failed_uids.append(instance.sop_instance_uid)
            remaining = total - index - 1
            if remaining:
                rsp.Status = STATUS_PENDING
                rsp.Identifier = None
                rsp.NumberOfRemainingSuboperations = remaining
                rsp.NumberOfCompletedSuboperations = completed
                rsp.NumberOfFailedSuboperations = failed
                rsp.NumberOfWarningSuboperations = warning
                request.wait()
                request.send(rsp)
        if failed == total:
            status = STATUS_OUT_OF_RESOURCES_SUBOPS
        elif failed or warning:
            status = STATUS_SUBOPS_WARNING
        else:
            status = STATUS_SUCCESS
        LOGGER.info("C-%s done: completed %d, failed %d, warning %d",
                    "MOVE" if isinstance(rsp, C_MOVE) else "GET", completed, failed, warning)
        self._final(request, rsp, status, completed, failed, warning, failed_uids)

    def _move(self, request: _Request) -> None:
        rsp = self._response(request)
        destination = str(request.msg.MoveDestination or "").strip()
        address = self.pacs.destinations.get(destination)
        if self.quirks.move_outcome == "move-destination-unknown" or address is None:
            LOGGER.info("C-MOVE: unknown destination %r", destination)
            self._send_error(request, rsp, QueryError(
                STATUS_MOVE_DESTINATION_UNKNOWN, f"Move destination unknown: {destination}"))
            return
        instances = self._resolve(request, rsp)
        if instances is None:
            return
        if not instances:
            self._final(request, rsp, STATUS_SUCCESS, 0, 0, 0)
            return
        if self._fake_outcomes(request, rsp, len(instances)):
            return

        host, port = address
        if self.quirks.move_outcome == "wrong-port":
            port += 1
        sop_classes = sorted({i.sop_class_uid for i in instances})
        contexts = [build_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
                    for uid in sop_classes]
        LOGGER.info("C-MOVE: %d instances to %s at %s:%d", len(instances), destination, host,
                    port)
        store_assoc = self.pacs.ae.associate(host, port, contexts=contexts, ae_title=destination,
                                             evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
        if not self.pacs.protocol_log:
            unbind_standard_logging(store_assoc)
        if not store_assoc.is_established:
            LOGGER.info("C-MOVE: could not associate with %s at %s:%d", destination, host, port)
            self._final(request, rsp, STATUS_OUT_OF_RESOURCES_SUBOPS, 0, len(instances), 0,
                        [i.sop_instance_uid for i in instances])
            return

        originator_ae = request.calling_ae
        originator_id = request.msg.MessageID

        def store(ds: Dataset, msg_id: int) -> int | None:
            status = store_assoc.send_c_store(ds, msg_id=msg_id, originator_aet=originator_ae,
                                              originator_id=originator_id)
            return status.get("Status") if status is not None else None

        try:
            self._run_suboperations(request, rsp, instances, store,
                                    lambda: store_assoc.is_established)
        finally:
            if store_assoc.is_established:
                store_assoc.release()
            else:
                store_assoc.abort()

    def _get(self, request: _Request) -> None:
        rsp = self._response(request)
        instances = self._resolve(request, rsp)
        if instances is None:
            return
        if not instances:
            self._final(request, rsp, STATUS_SUCCESS, 0, 0, 0)
            return
        if self._fake_outcomes(request, rsp, len(instances)):
            return
        assoc = request.assoc

        def store(ds: Dataset, msg_id: int) -> int | None:
            status = assoc.send_c_store(ds, msg_id=msg_id)
            return status.get("Status") if status is not None else None

        self._run_suboperations(request, rsp, instances, store, lambda: request.alive())


# ---- server ------------------------------------------------------------------------------------


def _no_delay(event: Any) -> None:
    """EVT_CONN_OPEN: send each small PDU at once (no wait for the peer's delayed ACK)."""
    raw = getattr(event.assoc.dul.socket, "socket", None)
    if raw is not None:
        pdu.no_delay(raw)


def unbind_standard_logging(target: Any) -> None:
    """Drop pynetdicom's per-PDU/DIMSE debug log handlers from one server or association.

    They format every message even when nobody logs at DEBUG; only our own acceptor side is
    affected (a client in the same process keeps its transcript). The simulator binds nothing
    else to these events, so every handler bound to them is pynetdicom's standard one.
    """
    for event in (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT):
        for handler, _args in list(target.get_handlers(event)):
            target.unbind(event, handler)


class SimAssociationServer(ThreadedAssociationServer):
    """A pynetdicom association server whose associations are served by :class:`QRService`.

    Its accept loop sleeps until a connection arrives or :meth:`shutdown` wakes it: it does not
    poll. Many simulated PACSes share one process (a fleet benchmark runs 200), and a polling
    loop per listener -- socketserver's, which wakes every ``poll_interval`` and then runs
    pynetdicom's ``service_actions``, a full ``gc.collect()`` every 60th wake-up -- costs CPU and
    the GIL in proportion to the number of listeners times the size of the heap, so the
    associations being served got slower with every listener added. Ended associations are
    still collected by the interpreter's own garbage collector.
    """

    daemon_threads = True

    def __init__(self, ae: Any, address: tuple[str, int], ae_title: str, contexts: list[Any],
                 service: QRService, evt_handlers: list[Any] | None = None) -> None:
        self.service = service
        handlers = [(evt.EVT_CONN_OPEN, service.on_connection), *(evt_handlers or [])]
        super().__init__(ae, address, ae_title, contexts, evt_handlers=handlers)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop_requested = False
        self._loop_ended = threading.Event()
        self._loop_ended.set()  # no loop running yet

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Accept connections until :meth:`shutdown`; ``poll_interval`` is ignored (nothing
        is polled: the loop waits on the listening socket and on a wake-up socket)."""
        self._loop_ended.clear()
        try:
            with selectors.DefaultSelector() as selector:
                try:
                    selector.register(self.socket, selectors.EVENT_READ)
                    selector.register(self._wake_r, selectors.EVENT_READ)
                except (OSError, ValueError):
                    if self._stop_requested:  # shut down (sockets closed) before the loop began
                        return
                    raise
                while not self._stop_requested:
                    ready = {key.fileobj for key, _ in selector.select()}
                    if self._stop_requested:
                        break
                    if self.socket in ready:
                        self._accept_one()
        finally:
            self._loop_ended.set()

    def _accept_one(self) -> None:
        """One connection request: accept it and hand it to a new association thread."""
        try:
            request, client_address = self.get_request()
        except OSError:  # the client went away before accept(), or the socket is closing
            return
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def service_actions(self) -> None:
        """Nothing between connections (pynetdicom's runs a full garbage collection)."""

    def shutdown(self) -> None:
        """Stop serving and close the listening socket.

        pynetdicom's own version also takes the server off its AE's list of servers, where only
        ``AE.start_server()`` puts one; SimulatedPACS runs this server itself, so there is
        nothing to take off.
        """
        self._stop_requested = True
        try:
            self._wake_w.send(b"x")
        except OSError:  # already closed
            pass
        self._loop_ended.wait()
        self.server_close()

    def server_close(self) -> None:
        super().server_close()
        for sock in (self._wake_r, self._wake_w):
            sock.close()
