"""The DCMTK ``dcmqrscp`` server for tests: a private dcmqrscp 3.6.7 on loopback, its
configuration file, and loading data into it by C-STORE.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from support.ports import LOOPBACK, free_port
from support.process import PeerStartError, ServerProcess, wait_for_tcp
from support.scu import set_nodelay
from support.tools import DCMQRSCP_BIN, DCMTK_BIN_DIR, INSTALL_HINT, peer_env, require_tool

DCMQRIDX_BIN = f"{DCMTK_BIN_DIR}/dcmqridx"

# dcmqrscp cuts a larger quota back to this many studies per storage area, and deletes the
# oldest studies (or crashes) when it is exceeded.
DCMQRSCP_MAX_STUDIES = 500


class DcmqrscpServer(ServerProcess):
    """A private DCMTK 3.6.7 ``dcmqrscp`` on loopback, with its own config and storage area.

    ``DcmqrscpServer(aet="DCMQRSCP", peers={"QRDOCTOR": ("QRDOCTOR", "127.0.0.1", port)})``
    writes ``dcmqrscp.cfg`` into a temp dir: ``NetworkTCPPort``, ``MaxPDUSize 16384``,
    ``MaxAssociations 16``, a ``HostTable`` with one line per peer (``symbolic = (AE, host,
    port)``: the known peers and the C-MOVE destinations), and an ``AETable`` line
    ``AET <area> <access> (<max_studies>, 1024mb) <ANY | symbolic names>``. With
    ``restrict_peers=True`` only the listed peers (calling AE *and* host) may associate; by
    default any peer may (``ANY``), but a C-MOVE destination must still be in the HostTable.
    dcmqrscp rejects a called AE title that is not in its AETable.

    ``start()`` runs ``dcmqrscp -c CONFIG --disable-host-lookup -v|-d PORT`` (log in
    ``log_path``) and returns once it answers an A-ASSOCIATE-RQ. Data is loaded by C-STORE
    (``store``); with RW access dcmqrscp indexes what it receives. Keep far below 500 studies:
    a storage area holds at most 500, and exceeding the quota deletes (or crashes).

    dcmqrscp forks a child per association; ``stop()`` signals the whole process group.
    """

    kind = "dcmqrscp"
    host = LOOPBACK

    def __init__(
        self,
        aet: str = "DCMQRSCP",
        peers: Mapping[str, tuple[str, str, int]] | None = None,
        access: str = "RW",
        *,
        restrict_peers: bool = False,
        max_studies: int = 200,
        extra_args: Sequence[str] = (),
        debug: bool = False,
        start_timeout: float = 15.0,
    ) -> None:
        if access not in ("R", "RW", "W"):
            raise ValueError("access must be R, RW or W")
        if max_studies > DCMQRSCP_MAX_STUDIES:
            raise ValueError(f"dcmqrscp holds at most {DCMQRSCP_MAX_STUDIES} studies per AE")
        for name, (peer_ae, peer_host, _port) in (peers or {}).items():
            if peer_host not in ("127.0.0.1", "localhost"):
                raise ValueError(f"peer {name}: host must be loopback, not {peer_host!r}")
            if len(peer_ae) > 16:
                raise ValueError(f"peer {name}: AE title longer than 16 characters")
        super().__init__("qrdoctor-dcmqrscp-", "dcmqrscp.log", start_timeout)
        self.aet = aet
        self.peers: dict[str, tuple[str, str, int]] = dict(peers or {})
        self.access = access
        self.restrict_peers = restrict_peers
        self.max_studies = max_studies
        self.extra_args = list(extra_args)
        self.debug = debug
        self.area = self.tmpdir / "area"
        self.area.mkdir()
        self.config_path = self.tmpdir / "dcmqrscp.cfg"
        self.dicom_port = free_port()
        self._stored_studies: set[str] = set()

    @property
    def port(self) -> int:
        return self.dicom_port

    @property
    def target(self) -> str:
        return f"{self.aet}@{LOOPBACK}:{self.dicom_port}"

    def config_text(self) -> str:
        lines = [
            "# written by qrdoctor's tests/support/dcmqrscp.py",
            f"NetworkTCPPort  = {self.dicom_port}",
            "MaxPDUSize      = 16384",
            "MaxAssociations = 16",
            "",
            "HostTable BEGIN",
        ]
        for name, (peer_ae, peer_host, peer_port) in self.peers.items():
            lines.append(f"{name} = ({peer_ae}, {peer_host}, {peer_port})")
        lines += ["HostTable END", "", "VendorTable BEGIN", "VendorTable END", "",
                  "AETable BEGIN"]
        if self.restrict_peers:
            peer_field = ", ".join(self.peers) if self.peers else "ANY"
        else:
            peer_field = "ANY"
        lines.append(
            f"{self.aet} {self.area} {self.access} ({self.max_studies}, 1024mb) {peer_field}"
        )
        lines += ["AETable END", ""]
        return "\n".join(lines)

    def check_installed(self) -> None:
        if not Path(DCMQRSCP_BIN).exists():
            raise PeerStartError(f"{DCMQRSCP_BIN} is missing; {INSTALL_HINT}")

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    def command(self) -> list[str]:
        return [DCMQRSCP_BIN, "-c", str(self.config_path), "--disable-host-lookup",
                "-d" if self.debug else "-v", *self.extra_args, str(self.dicom_port)]

    def ready(self, deadline: float) -> bool:
        return wait_for_tcp(self.dicom_port, deadline, self.proc) and self._answers(deadline)

    def start_failure(self, exit_code: int | None, cmd: list[str]) -> str:
        what = (f"dcmqrscp exited with status {exit_code} during start-up" if exit_code is not None
                else f"dcmqrscp did not answer an association within {self.start_timeout:.0f}s")
        return (f"{what} (port {self.dicom_port}); command {' '.join(cmd)}; "
                f"log {self.log_path}:\n{self.log_tail()}")

    def pick_ports(self) -> None:
        self.dicom_port = free_port()

    def _answers(self, deadline: float) -> bool:
        """True once dcmqrscp answers an A-ASSOCIATE-RQ (accept or reject both mean 'up')."""
        calling = next(iter(self.peers.values()))[0] if self.peers else "QRDOCTOR"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            ae = AE(ae_title=calling)
            ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 5
            ae.add_requested_context(Verification)
            assoc = ae.associate(LOOPBACK, self.dicom_port, ae_title=self.aet)
            if assoc.is_established:
                assoc.send_c_echo()
                assoc.release()
                return True
            if assoc.is_rejected:
                return True
            time.sleep(0.1)
        return False

    def store(self, datasets: Iterable[Dataset], calling_ae: str = "QRDOCTOR") -> int:
        """C-STORE ``datasets`` into dcmqrscp (one association); returns how many were stored.

        Raises if the association fails or any store does not end with status 0x0000, and
        before sending if the studies stored so far plus these would exceed ``max_studies``.
        Store each instance once: dcmqrscp 3.6.7 indexes a re-sent SOP instance again, and
        C-FIND then returns its study (series, instance) twice.
        """
        datasets = list(datasets)
        if not datasets:
            return 0
        studies = self._stored_studies | {str(ds.StudyInstanceUID) for ds in datasets}
        if len(studies) > self.max_studies:
            raise ValueError(
                f"{len(studies)} studies would exceed this dcmqrscp's quota of "
                f"{self.max_studies} (it would silently delete the oldest, or crash)"
            )
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.network_timeout = 10
        ae.dimse_timeout = 30
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate(LOOPBACK, self.dicom_port, ae_title=self.aet)
        if not assoc.is_established:
            raise RuntimeError(
                f"dcmqrscp refused the storage association; log:\n{self.log_tail()}"
            )
        set_nodelay(assoc)
        stored = 0
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code != 0x0000:
                    raise RuntimeError(
                        f"dcmqrscp C-STORE of {ds.SOPInstanceUID} -> status "
                        f"{code if code is None else hex(code)}; log:\n{self.log_tail()}"
                    )
                stored += 1
                self._stored_studies.add(str(ds.StudyInstanceUID))
        finally:
            if assoc.is_established:
                assoc.release()
        return stored

    load = store

    def index_files(self, files: Iterable[Path]) -> int:
        """Put Part 10 files into the storage area as they are and register them with
        ``dcmqridx`` (no C-STORE, so no transfer-syntax negotiation: compressed files stay
        compressed, whereas a C-STORE context offering only JPEG-LS is rejected by a default
        dcmqrscp, ``+x=``, measured). Returns how many were indexed. The same quota rule as :meth:`store` applies;
        index each SOP instance once. Works before or after ``start()``.
        """
        files = [Path(f) for f in files]
        if not files:
            return 0
        binary = require_tool(DCMQRIDX_BIN)
        studies = {str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)
                   for f in files}
        if len(self._stored_studies | studies) > self.max_studies:
            raise ValueError(f"these files would exceed this dcmqrscp's quota of "
                             f"{self.max_studies} studies")
        copied: list[str] = []
        for n, f in enumerate(files, start=len(list(self.area.glob("IDX*")))):
            dest = self.area / f"IDX{n:06d}.dcm"
            shutil.copyfile(f, dest)
            copied.append(str(dest))
        proc = subprocess.run([binary, str(self.area), *copied], env=peer_env(),
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"dcmqridx failed ({proc.returncode}): {proc.stderr.strip()}")
        self._stored_studies |= studies
        return len(copied)
