"""A hostile DICOMweb peer: a proxy on 127.0.0.1 in front of the simulated PACS's HTTP face that
mutates the answers it passes on.

Every HTTP answer the proxy writes is one *emission*, numbered from 0 in the session. The
:class:`WebStrikes` of a session say which emissions are mutated (by number, or at a rate) and,
for a pinned reproducer, with which operator of :mod:`support.fuzzwebmutate`; the operator and its
choices come from ``Random(f"{seed}:{emission}")``, so that a seed always means the same
session. URLs the simulator writes into its answers (RetrieveURL, BulkDataURI, Location) are
rewritten to the proxy's own address, so that every request of the checks comes through it.

The upstream simulator is shared by every session of a process (it keeps no session state).
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
import traceback
from dataclasses import dataclass, field

from qrdoctor.simulator import SimulatedPACS

from support.fuzzwebmutate import OPERATORS, Emission, Resp, applicable, redirect, serialise

MAX_REQUEST_HEAD = 64 * 1024
MAX_LOOPS = 20  # redirects of a loop answered at most in a session
HOLD_S = 30.0  # a held connection stays open this long at most (or until the session ends)
_UPSTREAM: dict[str, SimulatedPACS] = {}
_UPSTREAM_LOCK = threading.Lock()


def upstream() -> SimulatedPACS:
    """The process's simulated PACS with its DICOMweb face (started once)."""
    with _UPSTREAM_LOCK:
        if "pacs" not in _UPSTREAM:
            _UPSTREAM["pacs"] = SimulatedPACS(port=0, studies=6, seed=3, dicomweb=True).start()
        return _UPSTREAM["pacs"]


@dataclass
class WebStrikes:
    seed: int
    at: set[int] = field(default_factory=set)
    rate: float = 0.0
    limit: int = 0
    pinned: dict[int, str] = field(default_factory=dict)  # emission -> operator name
    count: int = 0
    applied: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, random.Random | None]:
        """The next emission's number and, when it is struck, its Random."""
        with self.lock:
            n = self.count
            self.count += 1
        rng = random.Random(f"{self.seed}:{n}")
        if n in self.pinned or n in self.at:
            return n, rng
        if self.rate and len(self.applied) < self.limit and rng.random() < self.rate:
            return n, rng
        return n, None


class WebFuzzPeer:
    """``with WebFuzzPeer(strikes) as peer:`` -- ``peer.url`` is the DICOMweb base URL."""

    def __init__(self, strikes: WebStrikes) -> None:
        self.strikes = strikes
        self.pacs = upstream()
        self.up_port = self.pacs.dicomweb_port
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.connections = 0
        self.requests: list[str] = []  # the request target of each emission, in order
        self._loops: dict[str, Emission] = {}  # request target -> the redirect to itself it gets
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="fuzzweb-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web/"

    def __enter__(self) -> WebFuzzPeer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._accept.join(2)
        self._sock.close()
        for t in self._threads:
            t.join(2)

    # -- serving -------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            t = threading.Thread(target=self._connection, args=(conn,), name=f"fuzzweb-{self.connections}",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        try:
            while not self.stop.is_set():
                request, buf = self._read_request(conn, buf)
                if request is None:
                    return
                if not self._answer(conn, request):
                    return
        except OSError:
            return
        except Exception:  # noqa: BLE001 - a bug of the peer, reported as such
            self.errors.append(traceback.format_exc())
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, conn: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
        while b"\r\n\r\n" not in buf:
            if self.stop.is_set() or len(buf) > MAX_REQUEST_HEAD:
                return None, b""
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return None, b""
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        return head, rest

    def _answer(self, conn: socket.socket, request: bytes) -> bool:
        """Forward one request upstream and write the (possibly mutated) answer; False: the
        connection ends."""
        lines = request.decode("latin-1").split("\r\n")
        method, target = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        resp = self._fetch(method, target, headers)
        n, rng = self.strikes.next()
        self.requests.append(target)
        if target in self._loops and self._loops[target].notes and len(self.strikes.applied) < MAX_LOOPS:
            emission = self._loops[target]
            self.strikes.applied.append(f"{n}:redirect loop")
        elif rng is None:
            emission = Emission(serialise(resp))
        else:
            name = self.strikes.pinned.get(n) or rng.choice(applicable(resp))
            op = OPERATORS[name]
            here = f"http://127.0.0.1:{self.port}{target}"
            emission = redirect(resp, rng, here) if op is redirect else op(resp, rng)
            self.strikes.applied.append(f"{n}:{name}")
            if "loop" in emission.notes:
                self._loops[target] = emission
        self._write(conn, emission)
        if emission.after == "hold":
            self.stop.wait(HOLD_S)
            return False
        if emission.after == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        return emission.after == "keep" and headers.get("connection", "").lower() != "close"

    def _fetch(self, method: str, target: str, headers: dict[str, str]) -> Resp:
        up = http.client.HTTPConnection("127.0.0.1", self.up_port, timeout=10)
        try:
            send = {k: v for k, v in headers.items() if k in ("accept", "authorization", "accept-encoding")}
            up.request(method, target, headers=send)
            r = up.getresponse()
            body = r.read()
            kept = [(k, v) for k, v in r.getheaders() if k.lower() not in ("content-length", "connection",
                                                                           "transfer-encoding")]
            resp = Resp(r.status, r.reason, kept, body)
        finally:
            up.close()
        mine, theirs = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.up_port}"
        resp.body = resp.body.replace(theirs.encode(), mine.encode())
        resp.headers = [(k, v.replace(theirs, mine)) for k, v in resp.headers]
        return resp

    def _write(self, conn: socket.socket, e: Emission) -> None:
        conn.settimeout(5)
        if not e.trickle:
            conn.sendall(e.data)
            return
        for i in range(len(e.data)):
            if self.stop.is_set():
                return
            conn.sendall(e.data[i:i + 1])
            time.sleep(e.trickle)
