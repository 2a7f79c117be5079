"""The Orthanc server for tests: a private Orthanc 1.10.1 on loopback, its configuration, and
its REST API (loading instances, statistics).
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from support.corpus import dataset_bytes
from support.ports import LOOPBACK, free_ports
from support.process import PeerStartError, ServerProcess
from support.tools import DICOMWEB_PLUGIN, INSTALL_HINT, ORTHANC_BIN

# Orthanc settings of a "healthy" test PACS: every operation allowed for any calling AE.
ORTHANC_ALLOW_ALL: dict[str, Any] = {
    "DicomAlwaysAllowEcho": True,
    "DicomAlwaysAllowStore": True,
    "DicomAlwaysAllowFind": True,
    "DicomAlwaysAllowMove": True,
    "DicomAlwaysAllowGet": True,
}


class OrthancServer(ServerProcess):
    """A private Orthanc 1.10.1 on loopback, with its own temp dir, config and ports.

    ``OrthancServer(aet="ORTHANC", config={...}, dicomweb=False)`` writes a test configuration
    (the base below, with ``config`` merged over it key by key) into a temporary directory;
    ``start()`` (or ``with``) runs ``/usr/sbin/Orthanc --verbose --no-jobs CONFIG`` with stdout
    and stderr in ``log_path``, and returns once ``GET /system`` answers (which happens after the
    DICOM server is listening). ``stop()`` terminates it and removes the temp dir.

    Configuration keys that matter for Query/Retrieve tests (Orthanc's default in brackets;
    behaviour marked "seen" was observed on Debian's 1.10.1):

    - ``DicomAet`` [set from ``aet``], ``DicomPort``/``HttpPort`` [free ports, always];
    - ``DicomCheckCalledAet`` [false]: reject associations whose called AE is not ``DicomAet``
      (seen: A-ASSOCIATE-RJ, "called AE title not recognised");
    - ``DicomAlwaysAllowEcho`` [true], ``DicomAlwaysAllowStore`` [true],
      ``DicomAlwaysAllowFind`` [false], ``DicomAlwaysAllowMove`` [false],
      ``DicomAlwaysAllowGet`` [false]: allow the operation from *any* calling AE; when false,
      only AEs listed in ``DicomModalities`` may do it (per-modality ``AllowFind`` etc. in the
      object form of an entry). Seen: an unlisted AE's association is *accepted*, and Orthanc
      aborts it (A-ABORT, no DIMSE status) when the C-FIND/C-MOVE request arrives;
    - ``DicomModalities``: ``{"NAME": ["AET", "127.0.0.1", port]}`` or
      ``{"NAME": {"AET": ..., "Host": ..., "Port": ..., "AllowMove": false, ...}}`` -- the known
      calling AEs *and* the C-MOVE destinations. Seen: a C-MOVE to an unlisted destination ends
      with status 0xC000 (log: "Unknown modality for AET"), not 0xA801 as dcmqrscp answers;
    - ``DicomCheckModalityHost`` [false]: the calling AE must also come from its listed host;
    - ``StrictAetComparison`` [false]: AE titles compared case-sensitively and exactly;
    - ``LimitFindResults`` [0 = none]: cap on patient/study/series C-FIND matches;
      ``LimitFindInstances`` [0 = none]: cap on instance-level matches. Seen: the capped list
      ends with final status 0xFE00 ("matching terminated due to cancel") although nobody
      cancelled -- not with Success;
    - ``CaseSensitivePN`` [false]: PN matching case sensitivity;
    - ``SynchronousCMove`` [true], ``DicomScuTimeout`` [10 s; 5 s here]: outgoing C-MOVE;
    - ``DicomWeb`` (with ``dicomweb=True``): QIDO-RS/WADO-RS under ``dicomweb_url``.

    The harness base also sets (see :meth:`base_config`): ``RemoteAccessAllowed`` and
    ``AuthenticationEnabled`` false, storage and index in the temp dir, no plugins (the
    DICOMweb one with ``dicomweb=True``; Orthanc only *logs* a missing plugin file, so start()
    checks ``GET /plugins``), no explorer/WebDAV, ``SaveJobs`` false, ``SyncStorageArea`` false
    (fast uploads), ``DeidentifyLogs`` false (readable DIMSE logs; the data is synthetic),
    ``StableAge`` 1, and the Orthanc defaults above written out explicitly.

    Orthanc 1.10 cannot choose its listening interface: it listens on all interfaces, so keep
    every client connection and every ``DicomModalities`` host on 127.0.0.1.
    """

    # A graceful Orthanc 1.10 shutdown takes about 3.5 s (its HTTP and DICOM servers poll).
    STOP_GRACE = 10.0

    kind = "orthanc"
    host = LOOPBACK

    def __init__(
        self,
        aet: str = "ORTHANC",
        config: Mapping[str, Any] | None = None,
        *,
        dicomweb: bool = False,
        start_timeout: float = 20.0,
    ) -> None:
        super().__init__("qrdoctor-orthanc-", "orthanc.log", start_timeout)
        self.aet = aet
        self.dicomweb = dicomweb
        self.overrides: dict[str, Any] = dict(config or {})
        self.config_path = self.tmpdir / "orthanc.json"
        self.pick_ports()

    # -- configuration ------------------------------------------------------------------------

    def pick_ports(self) -> None:
        self.dicom_port, self.http_port = free_ports(2)

    def base_config(self) -> dict[str, Any]:
        storage = str(self.tmpdir / "storage")
        cfg: dict[str, Any] = {
            "Name": f"qrdoctor-test-{self.aet}",
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "Plugins": [],
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "SaveJobs": False,
            "SyncStorageArea": False,  # no fsync per instance: uploads stay fast
            "DeidentifyLogs": False,  # synthetic data; readable DIMSE logs help debugging
            "StableAge": 1,
            "DicomScuTimeout": 5,
            "DicomAssociationCloseDelay": 0,
            "DicomModalities": {},
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "StrictAetComparison": False,
            "CaseSensitivePN": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }
        if self.dicomweb:
            cfg["Plugins"] = [DICOMWEB_PLUGIN]
            cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        return cfg

    @property
    def config(self) -> dict[str, Any]:
        """The configuration Orthanc is (or will be) started with."""
        cfg = self.base_config()
        cfg.update(self.overrides)
        # the ports and storage belong to the harness, whatever the overrides say
        cfg["DicomPort"] = self.dicom_port
        cfg["HttpPort"] = self.http_port
        return cfg

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicom-web"

    @property
    def target(self) -> str:
        return f"{self.aet}@{LOOPBACK}:{self.dicom_port}"

    # -- lifecycle ----------------------------------------------------------------------------

    def check_installed(self) -> None:
        if not Path(ORTHANC_BIN).exists():
            raise PeerStartError(f"{ORTHANC_BIN} is missing; {INSTALL_HINT}")
        if self.dicomweb and not Path(DICOMWEB_PLUGIN).exists():
            raise PeerStartError(f"{DICOMWEB_PLUGIN} is missing; {INSTALL_HINT}")

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def command(self) -> list[str]:
        return [ORTHANC_BIN, "--verbose", "--no-jobs", str(self.config_path)]

    def ready(self, deadline: float) -> bool:
        """True once ``GET /system`` answers (after the DICOM server listens)."""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                self.get("/system", timeout=1.0)
            except (OSError, RuntimeError, http.client.HTTPException):
                time.sleep(0.05)
                continue
            self._check_plugins()
            return True
        return False

    def start_failure(self, exit_code: int | None, cmd: list[str]) -> str:
        what = (f"Orthanc exited with status {exit_code} during start-up" if exit_code is not None
                else f"Orthanc did not answer GET /system within {self.start_timeout:.0f}s")
        return (f"{what} (DICOM port {self.dicom_port}, HTTP port {self.http_port}); "
                f"log {self.log_path}:\n{self.log_tail()}")

    def _check_plugins(self) -> None:
        # Orthanc 1.10 only logs an error for a missing plugin file and starts anyway.
        if self.dicomweb and "dicom-web" not in self.get("/plugins"):
            tail = self.log_tail()
            self.stop(grace=0, keep_files=True)
            raise PeerStartError(
                f"Orthanc started without the DICOMweb plugin; log {self.log_path}:\n{tail}"
            )

    # -- REST ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | list | None = None,
        *,
        timeout: float = 30.0,
        content_type: str | None = None,
    ) -> Any:
        """One REST call; returns the decoded JSON (or raw bytes when not JSON)."""
        conn = http.client.HTTPConnection(LOOPBACK, self.http_port, timeout=timeout)
        try:
            return self._request_on(conn, method, path, body, content_type)
        finally:
            conn.close()

    @staticmethod
    def _request_on(
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | str | dict | list | None,
        content_type: str | None = None,
    ) -> Any:
        headers = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            content_type = content_type or "application/json"
        if isinstance(body, str):
            body = body.encode()
        if content_type:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"Orthanc {method} {path} -> HTTP {resp.status}: {data[:500]!r}")
        ctype = resp.getheader("Content-Type", "")
        if "json" in ctype:
            return json.loads(data)
        return data

    def get(self, path: str, timeout: float = 30.0) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        return self.request("POST", path, body, timeout=timeout)

    def upload(self, items: Iterable[Dataset | bytes | str | os.PathLike]) -> list[dict]:
        """Load instances over REST (``POST /instances``, one keep-alive connection).

        ``items`` are datasets, Part 10 bytes, or file paths. Returns Orthanc's answers
        (``ID``, ``Status`` ...); raises unless each was stored (or already stored).
        """
        answers: list[dict] = []
        conn = http.client.HTTPConnection(LOOPBACK, self.http_port, timeout=60)
        try:
            for item in items:
                if isinstance(item, Dataset):
                    data = dataset_bytes(item)
                elif isinstance(item, (bytes, bytearray)):
                    data = bytes(item)
                else:
                    data = Path(item).read_bytes()
                answer = self._request_on(conn, "POST", "/instances", data,
                                          "application/dicom")
                if not isinstance(answer, dict) or answer.get("Status") not in (
                    "Success", "AlreadyStored"
                ):
                    raise RuntimeError(f"Orthanc did not store an instance: {answer!r}")
                answers.append(answer)
        finally:
            conn.close()
        return answers

    load = upload

    def statistics(self) -> dict:
        """``GET /statistics``: CountPatients, CountStudies, CountSeries, CountInstances ..."""
        return self.get("/statistics")

    def transfer_syntaxes(self) -> dict[str, str]:
        """SOP Instance UID -> the transfer syntax Orthanc stored the instance in (its
        ``TransferSyntax`` metadata)."""
        out: dict[str, str] = {}
        for iid in self.get("/instances"):
            tags = self.get(f"/instances/{iid}/simplified-tags")
            syntax = self.get(f"/instances/{iid}/metadata/TransferSyntax")
            if isinstance(syntax, bytes):
                syntax = syntax.decode()
            out[str(tags["SOPInstanceUID"])] = str(syntax).strip()
        return out

    def studies(self) -> list[str]:
        """Orthanc IDs of all studies."""
        return self.get("/studies")

    def clear(self) -> None:
        """Delete every patient (and so every study)."""
        for pid in self.get("/patients"):
            self.request("DELETE", f"/patients/{pid}")
