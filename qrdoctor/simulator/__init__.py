"""An embedded, real DICOM Q/R SCP that misbehaves exactly as real PACS products do.

It is built on pynetdicom (a genuine association acceptor, not a mock) and serves a synthetic,
deterministic archive (:mod:`.data`). Quirks (:mod:`.quirks`) switch on the misbehaviours of
real products, one by one or combined::

    with SimulatedPACS(studies=200, quirks="silent-cap=100,no-get") as pacs:
        print(pacs.ae_title, pacs.host, pacs.port)

``dicomweb=True`` (or any ``web-*`` quirk) also serves the archive over DICOMweb
(:mod:`.web`): ``pacs.dicomweb_url`` is the URL a user would configure.

The test suite and ``qrdoctor demo`` / ``qrdoctor simulate`` use it as their peer.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from qrdoctor.simulator.data import SOP_CLASSES, Archive
from qrdoctor.simulator.matching import MODELS, PATIENT_ROOT, PATIENT_STUDY_ONLY
from qrdoctor.simulator.quirks import (
    DEMO_QUIRKS,
    DEMO_STUDIES,
    QUIRKS,
    WEB_QUIRKS,
    QuirkInfo,
    Quirks,
    describe_quirks,
    parse_quirks,
)
from qrdoctor.simulator.scp import QRService, SimAssociationServer, unbind_standard_logging
from qrdoctor.simulator.web import DEFAULT_ROOT, DicomwebServer

__all__ = [
    "SimulatedPACS",
    "Archive",
    "QUIRKS",
    "QuirkInfo",
    "Quirks",
    "WEB_QUIRKS",
    "parse_quirks",
    "describe_quirks",
    "DEMO_QUIRKS",
    "DEMO_STUDIES",
    "demo_pacs",
]

LOGGER = logging.getLogger("qrdoctor.simulator")

DEFAULT_MAX_ASSOCIATIONS = 25
# Used as the only allowed calling AE title when an allowlist quirk has nothing to allow:
# pynetdicom treats an empty list as "allow everyone".
_NOBODY = "-NOBODY-KNOWN-"

_QR_TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


class SimulatedPACS:
    """A simulated PACS listening on ``host:port`` with a synthetic archive and quirks.

    ``port=0`` binds a free port; :attr:`port` is the real one once :meth:`start` returned.
    ``destinations`` maps move destination AE titles to ``(host, port)``; ``known_aes`` are
    further AE titles the PACS knows (for the allowlist and ``query-*-unknown`` quirks).
    ``archive`` may pass a prebuilt :class:`Archive` (then ``studies`` and ``seed`` are unused).
    ``dicomweb=True`` (implied by any ``web-*`` quirk) starts the DICOMweb face on ``host`` and
    ``dicomweb_port`` (0 = a free port): see :attr:`dicomweb_url` and :attr:`dicomweb_root`;
    a DICOMweb connection silent for ``dicomweb_timeout`` seconds is closed.
    """

    def __init__(
        self,
        ae_title: str = "SIMPACS",
        host: str = "127.0.0.1",
        port: int = 0,
        studies: int = 40,
        seed: int = 1,
        quirks: str | Iterable[str] | Quirks = "",
        destinations: dict[str, tuple[str, int]] | None = None,
        known_aes: Iterable[str] | None = None,
        *,
        archive: Archive | None = None,
        protocol_log: bool = False,
        dicomweb: bool = False,
        dicomweb_port: int = 0,
        dicomweb_timeout: float = 10.0,
    ) -> None:
        self.quirks: Quirks = parse_quirks(quirks)
        self.ae_title = ae_title
        self.host = host
        self._requested_port = int(port)
        self.archive = archive if archive is not None else Archive(studies=studies, seed=seed)
        self.destinations: dict[str, tuple[str, int]] = {}
        for name, (dest_host, dest_port) in (destinations or {}).items():
            self.destinations[name.strip()] = (dest_host, int(dest_port))
        self._known_aes = {a.strip() for a in (known_aes or ())}
        self.protocol_log = protocol_log
        self.ae = self._make_ae()
        self._service = QRService(self)
        self._server: SimAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.dicomweb = bool(dicomweb) or self.quirks.dicomweb
        self._requested_web_port = int(dicomweb_port)
        self._web_timeout = float(dicomweb_timeout)
        self._web: DicomwebServer | None = None

    # ---- configuration ------------------------------------------------------------------------

    @property
    def known_aes(self) -> frozenset[str]:
        """AE titles the PACS knows: ``known_aes``, move destinations and allowlisted titles."""
        known = set(self._known_aes) | set(self.destinations)
        if self.quirks.allowlist:
            known |= set(self.quirks.allowlist)
        return frozenset(known)

    def _allowed_calling_aes(self) -> list[str]:
        allow = self.quirks.allowlist
        if allow is None:
            return []
        titles = list(allow) if allow else sorted(self.known_aes)
        return titles or [_NOBODY]

    def _make_ae(self) -> AE:
        q = self.quirks
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = q.max_associations or DEFAULT_MAX_ASSOCIATIONS
        ae.require_called_aet = q.check_called_ae
        ae.require_calling_aet = self._allowed_calling_aes()
        ae.acse_timeout = 10
        ae.dimse_timeout = 30
        ae.network_timeout = 60
        ae.connection_timeout = 5

        ae.add_supported_context(Verification)
        for uid, (model, operation) in MODELS.items():
            if q.no_patient_root and model in (PATIENT_ROOT, PATIENT_STUDY_ONLY):
                continue
            if q.no_get and operation == "GET":
                continue
            ae.add_supported_context(uid, _QR_TRANSFER_SYNTAXES)
        # Storage SOP classes, with SCP/SCU role selection accepted, for C-GET sub-operations.
        for uid in SOP_CLASSES.values():
            ae.add_supported_context(uid, _QR_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        return ae

    def add_destination(self, ae: str, host: str, port: int) -> None:
        """Register (or replace) a C-MOVE destination."""
        self.destinations[ae.strip()] = (host, int(port))
        if self.quirks.allowlist == ():
            self.ae.require_calling_aet = self._allowed_calling_aes()

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def dicomweb_port(self) -> int | None:
        """The DICOMweb face's port once started (None without DICOMweb)."""
        if not self.dicomweb:
            return None
        return self._web.port if self._web is not None else self._requested_web_port

    @property
    def dicomweb_url(self) -> str | None:
        """What a user would configure: ``http://HOST:PORT/dicom-web/``, whatever root is served
        (so it is wrong under the ``web-root`` quirk). None without DICOMweb."""
        if not self.dicomweb:
            return None
        return f"http://{_url_host(self.host)}:{self.dicomweb_port}{DEFAULT_ROOT}/"

    @property
    def dicomweb_root(self) -> str | None:
        """The URL path actually served, ending with "/" (``/dicom-web/`` unless ``web-root``)."""
        if not self.dicomweb:
            return None
        return self.quirks.web_root + "/"

    @property
    def dicomweb_served_url(self) -> str | None:
        """The base URL that works: :attr:`dicomweb_url` with :attr:`dicomweb_root`."""
        if not self.dicomweb:
            return None
        return f"http://{_url_host(self.host)}:{self.dicomweb_port}{self.dicomweb_root}"

    @property
    def running(self) -> bool:
        return self._server is not None and not self._stopped.is_set()

    def _on_echo(self, event: Any) -> int:
        if self.quirks.slow:
            self._service.stopping.wait(self.quirks.slow)
        return 0x0000

    def _on_store(self, event: Any) -> int:
        LOGGER.info("refusing C-STORE from %s: the simulated archive is read-only",
                    event.assoc.requestor.ae_title)
        return 0xA700

    def start(self) -> SimulatedPACS:
        """Start listening (non-blocking). Returns self; :attr:`port` is then the real port."""
        if self._stopped.is_set():
            raise RuntimeError("a stopped SimulatedPACS cannot be restarted; create a new one")
        if self._server is not None:
            return self
        handlers = [(evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._on_store)]
        server = SimAssociationServer(
            self.ae, (self.host, self._requested_port), self.ae_title,
            self.ae.supported_contexts, self._service, evt_handlers=handlers,
        )
        if not self.protocol_log:
            unbind_standard_logging(server)
        if self.dicomweb:
            try:
                self._web = DicomwebServer(self, (self.host, self._requested_web_port),
                                           request_timeout=self._web_timeout)
            except OSError:
                server.server_close()
                raise
        self._server = server
        # A new thread starts without any check's transcript (qrdoctor.core.transcript), and so
        # do the threads it starts: what the simulated PACS logs stays out of the transcripts.
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"SimulatedPACS-{self.ae_title}@{self.port}",
            daemon=True,
        )
        self._thread.start()
        if self._web is not None:
            self._web.start()
        LOGGER.info("SimulatedPACS %s listening on %s:%d (%s; quirks: %s)", self.ae_title,
                    self.host, self.port, self.archive, self.quirks or "none")
        if self._web is not None:
            LOGGER.info("SimulatedPACS %s serves DICOMweb at %s", self.ae_title,
                        self.dicomweb_served_url)
        return self

    def stop(self) -> None:
        """Stop listening and end every open association, quickly."""
        server = self._server
        if server is None or self._stopped.is_set():
            return
        self._stopped.set()
        self._service.stopping.set()
        if self._web is not None:
            self._web.stop()
        server.shutdown()  # stops serve_forever, closes the listening socket
        if self._thread is not None:
            self._thread.join(timeout=5)
        assocs = [a for a in self.ae.active_associations]
        # A connection that never sent an A-ASSOCIATE-RQ (a TCP probe) has nothing to abort:
        # close its socket and do not wait for its thread, which ends on its own.
        waiting = [a for a in assocs if a.is_established]
        for assoc in assocs:
            try:
                assoc.abort(block=False)
            except Exception:  # pragma: no cover - already gone
                pass
        for assoc in assocs:
            if assoc not in waiting:
                _cut_connection(assoc)
        deadline = time.monotonic() + 0.5
        for assoc in waiting:
            assoc.join(timeout=max(0.0, deadline - time.monotonic()))
        for assoc in waiting:
            if assoc.is_alive():
                _cut_connection(assoc)  # the peer never closed its end: close ours
                assoc.join(timeout=2)
        LOGGER.info("SimulatedPACS %s stopped", self.ae_title)

    def serve_forever(self) -> None:
        """Start if needed and block until KeyboardInterrupt (for ``qrdoctor simulate``)."""
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SimulatedPACS:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"SimulatedPACS({self.ae_title}@{self.host}:{self.port}, {state}, "
                f"studies={self.archive.num_studies}, quirks={str(self.quirks)!r})")


def _url_host(host: str) -> str:
    """``host`` as written in a URL: an IPv6 address in brackets, a wildcard as loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _cut_connection(assoc: Any) -> None:
    """Shut the association's TCP connection down: its network thread sees the end and stops."""
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if raw is None:
        return
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:  # already gone
        pass


def demo_pacs(store_port: int, *, calling_ae: str = "QRDOCTOR", host: str = "127.0.0.1",
              port: int = 0, quirks: str = DEMO_QUIRKS, studies: int = DEMO_STUDIES,
              seed: int = 1, dicomweb: bool = True) -> SimulatedPACS:
    """The PACS of ``qrdoctor demo`` (not started): :data:`DEMO_QUIRKS`, ``calling_ae`` known
    and registered as move destination at ``host:store_port``, DICOMweb on a free port."""
    return SimulatedPACS(
        ae_title="SIMPACS", host=host, port=port, studies=studies, seed=seed, quirks=quirks,
        destinations={calling_ae: (host, store_port)}, known_aes=[calling_ae], dicomweb=dicomweb,
    )
