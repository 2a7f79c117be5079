"""The one place where qrdoctor touches pynetdicom's private internals.

Everything here reaches below pynetdicom's public API, for a reason given next to each use. The
rest of qrdoctor calls these functions and never names a private pynetdicom (or CPython) module
or attribute itself. :data:`REQUIRED` lists every private name relied on, and
``tests/test_compat.py`` fails, naming the attribute, when an installed pynetdicom lacks one:
pyproject.toml pins pynetdicom to the releases this was tested with.
"""

from __future__ import annotations

import importlib
import logging
import socket
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# _config: see keep_identifiers_out_of_logs() and pass_context_to_threads() for why
from pynetdicom import _config
from pynetdicom._validators import validate_ae as _pynetdicom_validate_ae
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

from qrdoctor.core.imports import library
from qrdoctor.dicom import pdu

_log = logging.getLogger("qrdoctor.dicom")

# (module, attribute, what we use it for): checked by tests/test_compat.py
REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("pynetdicom._validators", "validate_ae", "AE title validation (validate_ae)"),
    ("pynetdicom._config", "LOG_REQUEST_IDENTIFIERS", "identifiers kept out of logs"),
    ("pynetdicom._config", "LOG_RESPONSE_IDENTIFIERS", "identifiers kept out of logs"),
    ("pynetdicom._config", "PASS_CONTEXTVARS", "per-check transcripts"),
    ("pynetdicom.association.Association", "_serve_request",
     "the simulator's Q/R dispatch; responses given back to waiting senders"),
    ("pynetdicom.dul.DULServiceProvider", "__init__", "daemon DUL threads (daemon_dul_threads)"),
    ("pynetdicom.transport.AssociationSocket", "recv", "bounded, watched reads (watch_reads)"),
    ("pynetdicom.transport.AssociationSocket", "__init__", "TCP_NODELAY (no_delay_on_association_sockets)"),
)
# Instance attributes (set in Association.__init__), checked on a fresh Association
REQUIRED_ON_ASSOCIATION: tuple[str, ...] = ("_is_paused", "_sent_release", "dul", "_reactor_checkpoint")


def validate_ae(value: str) -> tuple[bool, str]:
    """(valid, why not) for an AE title, by pynetdicom's own rule.

    Why the private function: pynetdicom applies exactly this rule when it builds our
    association requests. ``core.target.ae_title_problem`` applies the same rule without importing
    pynetdicom (start-up time); ``tests/test_target_ae.py`` proves the two agree through this
    function, so a pynetdicom upgrade that changes the rule fails the suite.
    """
    return _pynetdicom_validate_ae(value)


def keep_identifiers_out_of_logs() -> None:
    """Stop pynetdicom from writing C-FIND/C-MOVE/C-GET identifiers into its log.

    Why: identifiers carry patient data, and pretty-printing every one costs time on a large
    C-FIND. pynetdicom documents these switches in its ``_config`` module only.
    """
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


def pass_context_to_threads() -> None:
    """Run pynetdicom's association and DUL threads in a copy of their creator's context.

    Why: a check's protocol transcript is attributed through a ``contextvars.ContextVar``
    (qrdoctor.core.transcript); with this switch the threads an association starts inherit the
    check's transcript, so their log lines land in that check's transcript and no other.
    pynetdicom documents the switch in its ``_config`` module only.
    """
    _config.PASS_CONTEXTVARS = True


def daemon_dul_threads() -> None:
    """Make every DUL thread pynetdicom starts from now on a daemon thread (idempotent).

    Why: pynetdicom 3.0 starts each association's DUL reactor with ``daemon = False``. One
    blocked in ``recv`` on a peer that holds a half-sent PDU is joined at interpreter exit, so
    the process outlives its report by as long as the peer holds the connection. The
    association threads themselves are already daemons; the DUL's flag is set in its
    ``__init__`` and has no public setter before pynetdicom starts the thread.
    """
    init = DULServiceProvider.__init__
    if getattr(init, "_qrdoctor_daemon", False):
        return

    def daemon_init(self: DULServiceProvider, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.daemon = True

    daemon_init._qrdoctor_daemon = True  # type: ignore[attr-defined]
    DULServiceProvider.__init__ = daemon_init  # type: ignore[method-assign]


def no_delay_on_association_sockets() -> None:
    """Set TCP_NODELAY on the socket of every pynetdicom association from now on, requestor and
    acceptor alike (idempotent; done when this module is imported).

    Why: pynetdicom leaves Nagle's algorithm on. A DIMSE message often goes out as two writes (a
    command P-DATA-TF, then a dataset one); with Nagle on, the second small write waits until
    the peer acknowledges the first, and a peer that delays its ACKs (40 ms on Linux) adds that
    to every round trip. pynetdicom offers the EVT_CONN_OPEN event for this, but only to the
    code opening each association; this covers every association qrdoctor opens or accepts
    (assoc.association, the simulator, tests). The socket is created (requestor, not yet
    connected: the option survives connect() and a TLS wrap) or handed over by the server
    (acceptor) in ``AssociationSocket.__init__``.
    """
    init = AssociationSocket.__init__
    if getattr(init, "_qrdoctor_no_delay", False):
        return

    def no_delay_init(self: AssociationSocket, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        raw = getattr(self, "socket", None)  # the attribute is checked by tests/test_nodelay.py
        if raw is not None:
            pdu.no_delay(raw)

    no_delay_init._qrdoctor_no_delay = True  # type: ignore[attr-defined]
    AssociationSocket.__init__ = no_delay_init  # type: ignore[method-assign]


no_delay_on_association_sockets()
# Applied here, where pynetdicom is first imported by qrdoctor, rather than by the transcript
# module: a run that never opens a pynetdicom association (a monitoring echo) never imports it.
keep_identifiers_out_of_logs()
pass_context_to_threads()


# The exception pynetdicom's threads could not get past, per association (see below).
_THREAD_FAILURES: weakref.WeakKeyDictionary[Association, BaseException] = weakref.WeakKeyDictionary()


def contain_thread_failures() -> None:
    """Keep exceptions raised by pynetdicom's own threads on peer bytes from escaping (idempotent).

    Why: pynetdicom decodes the peer's PDUs in the association's DUL thread and serves requests
    (the C-STOREs of a C-GET) in the association's thread. Bytes it cannot make sense of raise
    there -- a KeyError in ``decode_msg``, a ValueError in ``pdu_primitives``, an
    InvalidEventError in the state machine (found by the fuzzer). Uncaught, each printed a
    traceback on the user's terminal. Here the exception is logged into the check's transcript
    and kept for the association, so the check reports a protocol error
    (:func:`thread_failure`); the association then ends by its own timeouts, as it did before.
    Neither thread class offers a public hook for this.
    """
    for cls in (DULServiceProvider, Association):
        original = cls.run
        if getattr(original, "_qrdoctor_contained", False):
            continue

        def run(self: Any, _original: Callable = original) -> None:
            try:
                _original(self)
            except Exception as exc:  # noqa: BLE001 - peer bytes pynetdicom could not handle
                assoc = self if isinstance(self, Association) else getattr(self, "assoc", None)
                if assoc is not None:
                    _THREAD_FAILURES.setdefault(assoc, exc)
                _log.info("pynetdicom could not handle what the peer sent (%s: %s); the association "
                             "is given up", type(exc).__name__, exc)

        run._qrdoctor_contained = True  # type: ignore[attr-defined]
        cls.run = run  # type: ignore[method-assign]


def keep_responses_for_waiting_senders() -> None:
    """Give a response the association's reactor took by mistake back to the send_*() method
    waiting for it (idempotent).

    Why: pynetdicom's ``send_c_store``/``send_c_move``/... pause the association's reactor
    thread by clearing ``_reactor_checkpoint`` and waiting until ``_is_paused`` is set. The
    reactor sets ``_is_paused`` *before* it waits on the checkpoint, so a sender can see it set
    while the reactor has already passed the (still open) checkpoint; the reactor then takes the
    next message off the DIMSE queue -- the very response the sender waits for -- and
    ``_serve_request`` drops it as "Received unexpected ... service message" (pynetdicom issue
    #875). The sender then waits for ever: measured here as a whole-study C-MOVE from the
    simulator stalling after 2 or 12 of 37 objects on a loaded machine, and possible for
    qrdoctor's own C-MOVE/C-GET. While the checkpoint is cleared a sender owns the queue, so a
    message the reactor takes then goes back to the front of the queue. There is no public hook.
    """
    original = Association._serve_request
    if getattr(original, "_qrdoctor_requeues", False):
        return

    def serve(self: Association, msg: Any, context_id: int) -> None:
        checkpoint = getattr(self, "_reactor_checkpoint", None)
        if checkpoint is not None and not checkpoint.is_set() and not msg.is_valid_request:
            q = self.dimse.msg_queue
            with q.mutex:
                q.queue.appendleft((context_id, msg))
                q.unfinished_tasks += 1
                q.not_empty.notify()
            return
        original(self, msg, context_id)

    serve._qrdoctor_requeues = True  # type: ignore[attr-defined]
    Association._serve_request = serve  # type: ignore[method-assign]


def thread_failure(assoc: Association) -> BaseException | None:
    """The exception one of this association's pynetdicom threads stopped on, if any."""
    return _THREAD_FAILURES.get(assoc)


class ReadWatch:
    """What an association's transport read, as far as a protocol error needs it: the PDU a
    read stopped in the middle of, and whether the peer closed the connection."""

    def __init__(self) -> None:
        self.cut: tuple[bytes, int, int, str] | None = None  # first bytes, announced, arrived, why
        self.closed_by_peer = False
        self.reading = False  # a recv is in progress
        self._header: bytes | None = None  # the header whose body is read next

    def note(self, data: bytes, then: str | None) -> None:
        """One read (a PDU header, or the body after it) returned ``data``; ``then`` says why it
        stopped short ("closed" or a timeout's words), None when it got all it asked for."""
        if self._header is None:  # a header
            if then is None:
                self._header = data
                return
            if data:
                self.cut = (data, 6, len(data), then)
        else:  # the body of the header before it
            header, self._header = self._header, None
            if then is None:
                return
            announced = 6 + int.from_bytes(header[2:6], "big")
            self.cut = ((header + data)[:32], announced, 6 + len(data), then)
        self.closed_by_peer = then == "closed"


def watch_reads(assoc: Association, timeout: float) -> ReadWatch:
    """Give the association's connection a read (and write) timeout and watch its reads.

    Why: pynetdicom clears the socket timeout once connected (``AssociationSocket.connect``
    calls ``settimeout(None)``), so its DUL thread blocks in ``recv`` for as long as a peer
    holds a PDU shorter than its header says; and what such a read received is dropped when it
    fails. Here the DUL's reads (``AssociationSocket.recv``: 6 header bytes, then the body)
    go through a loop of our own that gives up after ``timeout`` seconds of silence and keeps
    what arrived. Call it when the connection is open (an ``EVT_CONN_OPEN`` handler).
    """
    transport = assoc.dul.socket
    watch = ReadWatch()
    if transport is None or transport.socket is None:
        return watch
    transport.socket.settimeout(timeout)

    def recv(nr_bytes: int) -> bytearray:
        data = bytearray()
        watch.reading = True
        try:
            while len(data) < nr_bytes:
                try:
                    pdu.quick_ack(transport.socket)
                    chunk = transport.socket.recv(min(nr_bytes - len(data), 1 << 16))
                except TimeoutError:
                    watch.note(bytes(data), f"nothing more arrived within {timeout:g} s")
                    raise
                except OSError:
                    watch.note(bytes(data), "the connection failed")
                    raise
                if not chunk:
                    watch.note(bytes(data), "closed")
                    return data
                data += chunk
        finally:
            watch.reading = False
        watch.note(bytes(data), None)
        return data

    transport.recv = recv  # type: ignore[method-assign]
    return watch


def unblock_reads(assoc: Association) -> None:
    """End a read the association's DUL thread is blocked in, so that an abort does not wait
    for it: shuts the connection's receiving side. Why: ``Association.abort`` waits until the
    DUL thread handles the abort, which it cannot while it waits for the rest of a PDU."""
    transport = assoc.dul.socket
    try:
        if transport is not None and transport.socket is not None:
            transport.socket.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def route_requests(assoc: Association, serve: Callable[[Any, int], bool]) -> None:
    """Offer every DIMSE request this acceptor association receives to ``serve`` first.

    ``serve(message, context_id)`` returns True when it answered the request itself; otherwise
    pynetdicom's own handling applies. Why the private hook: pynetdicom's Q/R service classes
    decide the final statuses and sub-operation counts of C-MOVE/C-GET themselves (and answer
    an unreachable destination with 0xA801), which would hide exactly the behaviours the
    simulator reproduces; ``Association._serve_request`` is where pynetdicom dispatches a
    request to its service classes, and it has no public replacement.
    """
    original = assoc._serve_request

    def dispatch(msg: Any, context_id: int) -> None:
        # After we sent an A-RELEASE-RQ pynetdicom ignores further requests (with a warning):
        # leave them to it.
        if not assoc._sent_release and _served(assoc, serve, msg, context_id):
            return
        original(msg, context_id)

    assoc._serve_request = dispatch  # type: ignore[method-assign]


def _served(assoc: Association, serve: Callable[[Any, int], bool], msg: Any, context_id: int) -> bool:
    with _reactor_paused(assoc):
        return serve(msg, context_id)


@contextmanager
def _reactor_paused(assoc: Association) -> Iterator[None]:
    """Mark the association's reactor paused while our handler runs.

    Why: pynetdicom's ``send_c_store`` (used for C-GET sub-operations on the same association)
    waits until the reactor says it is paused; pynetdicom's own ``_serve_request`` sets the same
    flag around its service classes, and there is no public way to set it.
    """
    assoc._is_paused = True
    try:
        yield
    finally:
        assoc._is_paused = False


def missing() -> list[str]:
    """The private names compat relies on that the installed pynetdicom lacks."""
    gone = []
    for module, attribute, use in REQUIRED:
        owner = lookup(module)
        if owner is None or not hasattr(owner, attribute):
            gone.append(f"{module}.{attribute} ({use})")
    assoc = _fresh_association()
    for attribute in REQUIRED_ON_ASSOCIATION:
        if not hasattr(assoc, attribute):
            gone.append(f"pynetdicom.association.Association().{attribute} (the simulator's Q/R dispatch)")
    return gone


def lookup(dotted: str) -> Any:
    """A module, or a class inside a module, by its dotted name (None if absent)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            owner = getattr(owner, name, None)
        return owner
    return None


def _fresh_association() -> Association:
    return Association(library("pynetdicom").AE(), "requestor")  # not started: no thread, no socket
