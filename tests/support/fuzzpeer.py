"""The fuzzing peer: an in-process PACS on a raw socket that plays a valid Q/R exchange and
mutates it.

:class:`FuzzPACS` listens on 127.0.0.1 and answers as a small, correct PACS would: A-ASSOCIATE-AC
(or -RJ for a wrong AE title), C-ECHO, C-FIND (pending identifiers with names, dates and UIDs,
honouring C-CANCEL, then a final status), C-MOVE (a Store SCU association *to* qrdoctor's
temporary Store SCP with C-STORE requests, pending counters, a final count) and C-GET (the
C-STORE requests on the same association). Every message it sends goes through its
:class:`~support.fuzzconn.Connection`, which asks the :class:`Strikes` whether to mutate it.

Its parts: :mod:`support.fuzzwire` (DICOM built part by part), :mod:`support.fuzzmutate` (the
mutations), :mod:`support.fuzzarchive` (the data and the matching), :mod:`support.fuzzconn`
(reading and emitting), :mod:`support.fuzzretrieve` (C-MOVE and C-GET), and
:mod:`support.fuzzsession` (one judged session). Everything is written from scratch at the PDU
and DIMSE level; the only help taken is pydicom's data dictionary (for VRs) and its reader for
qrdoctor's own request identifiers.
"""

from __future__ import annotations

import random
import socket
import threading
import traceback
from dataclasses import dataclass, field

from support.fuzzarchive import (
    EXPLICIT,
    IMPLICIT,
    LEVELS,
    MODELS,
    dataset_elems,
    identifier_keys,
    query,
)
from support.fuzzconn import (
    APP_CONTEXT,
    Connection,
    Gone,
    Message,
    Request,
    acceptable,
    parse_associate,
    uid,
    user_information,
)
from support.fuzzmutate import Mutation
from support.fuzzretrieve import Retrieve
from support.fuzzwire import Assoc, Elem, Elems, Item, Pdu, text, us

# -- the strikes: which emissions are mutated ------------------------------------------------------


@dataclass
class Strikes:
    """Where a session mutates: the emission numbers (per check) to strike, or a rate.

    A strike's operator is drawn from the seed, unless ``pinned`` names it (a reproducer that must
    keep meaning the same mutation while the operator table grows).
    """

    seed: int
    at: dict[str | None, set[int]] = field(default_factory=dict)  # check id -> emission numbers
    pinned: dict[tuple[str | None, int], str] = field(default_factory=dict)  # (check, number) -> operator
    rate: float = 0.0  # strike any emission with this probability...
    limit: int = 0  # ... up to this many times
    check: str | None = None  # the check running now (set by the session's observer)
    counts: dict[str | None, int] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rate_rng: random.Random | None = None

    def mutation(self, kind: str, with_data_set: bool = False) -> Mutation | None:
        """The mutation for the message about to go out, or None to send it as it is."""
        with self._lock:
            check = self.check
            n = self.counts.get(check, 0)
            self.counts[check] = n + 1
            strike = n in self.at.get(check, ())
            if not strike and self.rate and len(self.applied) < self.limit:
                self._rate_rng = self._rate_rng or random.Random(f"{self.seed}/rate")
                strike = self._rate_rng.random() < self.rate
            if not strike:
                return None
            rng = random.Random(f"{self.seed}/{check}/{n}")
            name = self.pinned.get((check, n))
            mut = Mutation.named(name, kind, rng) if name else \
                Mutation.choose(kind, random.Random(f"{self.seed}/{check}/{n}/operator"), rng, with_data_set)
            self.applied.append(f"{check}#{n} {kind} {mut.name}")
            return mut


# -- the PACS ------------------------------------------------------------------------------------------


class FuzzPACS:
    """A Q/R SCP on 127.0.0.1 that answers validly except where its :class:`Strikes` say."""

    def __init__(self, strikes: Strikes, *, ae_title: str = "FUZZPACS", move_ae: str = "QRDOCTOR",
                 known_calling: tuple[str, ...] = ("QRDOCTOR",), store_port: int = 0,
                 explicit: bool = False, together: bool = False, max_pdu: int = 16384) -> None:
        self.strikes = strikes
        self.ae_title, self.move_ae, self.known_calling = ae_title, move_ae, known_calling
        self.store_port = store_port
        self.explicit, self.together, self.max_pdu = explicit, together, max_pdu
        self.stopping = threading.Event()
        self.errors: list[str] = []  # the peer's own failures (a bug in this module)
        self.connections = 0
        self.holds = 0
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]

    def __enter__(self) -> FuzzPACS:
        self._spawn(self._accept, "fuzzpeer-accept")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in [self._listener, *socks]:
            try:
                s.close()
            except OSError:
                pass
        for t in threads:
            t.join(2.0)

    def _spawn(self, fn, name: str, *args) -> None:
        t = threading.Thread(target=self._guard, args=(fn, *args), name=name, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Gone:
            pass
        except Exception:  # noqa: BLE001 - the peer's own bug: reported by the session
            self.errors.append(traceback.format_exc())

    def track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.append(sock)
        return sock

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._spawn(self._serve, f"fuzzpeer-conn-{self.connections}", self.track(conn))

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            conn = Connection(self, sock)
            kind, body = conn.read_pdu()
            if kind != 0x01 or len(body) < 68:
                return
            Association(self, conn, parse_associate(body)).run()


class Association:
    """The SCP side of one association: negotiation, then the services until release."""

    def __init__(self, peer: FuzzPACS, conn: Connection, request: Request) -> None:
        self.peer, self.conn, self.request = peer, conn, request
        conn.peer_max = request.max_pdu

    def run(self) -> None:
        req, conn, peer = self.request, self.conn, self.peer
        if req.called != peer.ae_title:
            conn.emit_simple("A-ASSOCIATE-RJ", 0x03, bytes([0, 1, 1, 7]))
            return
        if req.calling not in peer.known_calling:
            conn.emit_simple("A-ASSOCIATE-RJ", 0x03, bytes([0, 1, 1, 3]))
            return
        mut = peer.strikes.mutation("A-ASSOCIATE-AC")
        ac = self.accept()
        conn.emit("A-ASSOCIATE-AC", [Pdu(0x02, (mut.at("assoc", ac) if mut else ac).body())], mut)
        while True:
            ev = conn.next_event()
            if ev == "release":
                conn.emit_simple("A-RELEASE-RP", 0x06, bytes(4))
                return
            self.dispatch(ev)  # type: ignore[arg-type]

    def accept(self) -> Assoc:
        items = [Item(0x10, APP_CONTEXT)]
        for p in self.request.contexts:
            ts = self._transfer_syntax(p.transfer_syntaxes)
            ok = acceptable(p.abstract) and ts is not None
            if ok:
                self.conn.contexts[p.context_id] = (p.abstract, ts == EXPLICIT)
            result = 0 if ok else (3 if not acceptable(p.abstract) else 4)
            items.append(Item(0x21, bytes([p.context_id, 0, result, 0]), [Item(0x40, text(ts or IMPLICIT, "UI"))]))
        items.append(user_information(self.peer.max_pdu, self.request.roles))
        req = self.request
        return Assoc(0x02, req.called.encode().ljust(16), req.calling.encode().ljust(16), items)

    def _transfer_syntax(self, offered: list[str]) -> str | None:
        order = (EXPLICIT, IMPLICIT) if self.peer.explicit else (IMPLICIT, EXPLICIT)
        return next((ts for ts in order if ts in offered), None)

    def dispatch(self, msg: Message) -> None:
        field_ = msg.us(0x0100)
        if field_ == 0x0030:
            self.respond(msg, 0x8030, 0x0000)
        elif field_ == 0x0020:
            self.find(msg)
        elif field_ in (0x0021, 0x0010):
            Retrieve(self, msg).run()
        # a stale C-CANCEL (the query already ended) or anything else: ignored

    def respond(self, msg: Message, command_field: int, status: int, dataset: Elems | None = None,
                extra: list[Elem] = (), kind: str | None = None) -> None:
        sop_class = msg.command.get(0x0002, b"")
        elems = [Elem(0x0002, b"UI", text(uid(sop_class), "UI")), Elem(0x0100, b"US", us(command_field)),
                 Elem(0x0120, b"US", msg.command.get(0x0110, us(1))[:2]),
                 Elem(0x0800, b"US", us(0x0001 if dataset is not None else 0x0101)),
                 Elem(0x0900, b"US", us(status)), *extra]
        names = {0x8030: "C-ECHO-RSP", 0x8020: "C-FIND-RSP", 0x8021: "C-MOVE-RSP", 0x8010: "C-GET-RSP"}
        self.conn.emit_message(kind or names.get(command_field, "RSP"), msg.context_id,
                               sorted(elems, key=lambda e: e.tag), dataset)

    def find(self, msg: Message) -> None:
        abstract, explicit = self.conn.contexts.get(msg.context_id, ("", False))
        model = MODELS.get(abstract, ("", ""))[0]
        keys = identifier_keys(msg.dataset or b"", explicit)
        level = keys.get("QueryRetrieveLevel", "")
        if level not in LEVELS.get(model, ()):
            self.respond(msg, 0x8020, 0xA900)
            return
        wanted = [k for k in keys if k not in ("QueryRetrieveLevel",)]
        msg_id = msg.us(0x0110, 1)
        for row in query(level, {k: v for k, v in keys.items() if k != "SpecificCharacterSet"}):
            if self.conn.cancelled(msg_id):
                self.respond(msg, 0x8020, 0xFE00)
                return
            values = [(k, row.get(k, "")) for k in wanted if k != "SpecificCharacterSet"]
            self.respond(msg, 0x8020, 0xFF00, dataset_elems([("QueryRetrieveLevel", level), *values], explicit))
        self.respond(msg, 0x8020, 0x0000)
