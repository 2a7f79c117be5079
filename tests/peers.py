"""Real DICOM peers on loopback for the test suite.

This module starts and stops servers that other people wrote -- Orthanc (Debian's ``orthanc``
1.10.1, optionally with ``orthanc-dicomweb``) and DCMTK's ``dcmqrscp`` 3.6.7 -- so that tests can
prove what qrdoctor reports against real Query/Retrieve implementations. It also builds small,
valid, realistic DICOM test data and wraps DCMTK's command-line clients as an independent
second opinion.

Everything listens on, and every client connects to, 127.0.0.1 only; every port is chosen at run
time with :func:`free_port` (never 4242/8042, where a system Orthanc may run).

Public API
----------
- :func:`free_port`, :func:`free_ports` -- unused loopback TCP ports.
- :func:`require_tool` -- path of a needed binary/plugin; skips the test when it is missing, but
  *fails* it when ``CI=true`` (real-peer tests must never silently skip in CI).
- :func:`make_instance`, :func:`make_corpus`, :func:`dataset_bytes`, :func:`count_studies`,
  :func:`stable_uid` -- test data.
- :class:`OrthancServer`, :class:`DcmqrscpServer` -- context-managed servers with a common
  surface: ``kind``, ``aet``, ``host``, ``dicom_port``, ``target`` (``AE@127.0.0.1:port``),
  ``pid``, ``log_path``, ``tmpdir``, ``store_port`` (a port reserved for our Store SCP, set by
  fixtures), ``corpus`` (what a fixture loaded), ``load(datasets)``, ``log_tail()``,
  ``running``, ``stop(grace=...)`` and ``kill()``. :data:`ORTHANC_ALLOW_ALL` is the Orthanc
  config of a PACS that lets any calling AE do anything.
- :func:`c_echo`, :func:`c_find`, :func:`c_find_with_status`, :func:`c_move` -- minimal
  pynetdicom SCU helpers; :class:`StoreReceiver` -- a pynetdicom Storage SCP that keeps what
  it receives (a C-MOVE destination).
- :func:`findscu`, :func:`findscu_count` -- DCMTK ``findscu`` as an independent C-FIND client.
- :func:`process_group_alive` -- whether a stopped server left any process behind.

Every process the harness starts gets ``TCP_NODELAY=1`` (:data:`PEER_ENV`): without it DCMTK
3.6.7 keeps Nagle's algorithm on and each DIMSE message waits ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

LOOPBACK = "127.0.0.1"

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
# DCMTK tools are always called by absolute path: pynetdicom installs console scripts with the
# same names (echoscu, findscu, movescu, getscu, storescu, storescp), and a Python environment's
# bin directory (or a pyenv shim) usually comes first on PATH.
DCMTK_BIN_DIR = "/usr/bin"
DCMQRSCP_BIN = f"{DCMTK_BIN_DIR}/dcmqrscp"
FINDSCU_BIN = f"{DCMTK_BIN_DIR}/findscu"

INSTALL_HINT = (
    "install Debian's packages: apt-get install orthanc orthanc-dicomweb dcmtk "
    "(scripts/test.sh does this)"
)

# dcmqrscp cuts a larger quota back to this many studies per storage area, and deletes the
# oldest studies (or crashes) when it is exceeded.
DCMQRSCP_MAX_STUDIES = 500


# DCMTK 3.6.7 (dcmqrscp, findscu, movescu, storescu ... and Orthanc, which links DCMTK) leaves
# Nagle's algorithm on unless the environment variable TCP_NODELAY=1 is set. Its PDU writes
# (header, then body) then meet the peer's delayed ACK: ~40 ms per message, ~90 ms per C-STORE.
# Every process the harness starts gets TCP_NODELAY=1; it changes timing only, not behaviour.
PEER_ENV = {"TCP_NODELAY": "1"}


def peer_env() -> dict[str, str]:
    """The environment for a real peer or DCMTK client: ours plus :data:`PEER_ENV`."""
    env = dict(os.environ)
    env.update(PEER_ENV)
    return env


def set_nodelay(assoc: Any) -> None:
    """Disable Nagle on an established pynetdicom association's socket (best effort).

    pynetdicom sends a C-STORE's command and data set as separate writes; with Nagle on, the
    second waits for the peer's delayed ACK (~40 ms per instance).
    """
    try:
        sock = assoc.dul.socket.socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


class PeerStartError(RuntimeError):
    """A real peer did not start (or did not become ready) in time."""


# --------------------------------------------------------------------------------------------
# ports and tools
# --------------------------------------------------------------------------------------------

_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets stay bound until all ports are chosen, so the ports are distinct; ports already
    handed out by this process are never returned again (the kernel may otherwise reuse one
    that a not-yet-started server was given).
    """
    with _ports_lock:
        socks: list[socket.socket] = []
        ports: list[int] = []
        try:
            attempts = 0
            while len(ports) < n:
                attempts += 1
                if attempts > 50 * n + 50:
                    raise RuntimeError("could not find free loopback ports")
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((LOOPBACK, 0))
                socks.append(s)
                port = s.getsockname()[1]
                if port in _handed_out or port in (4242, 8042, 104, 11112):
                    continue
                ports.append(port)
        finally:
            for s in socks:
                s.close()
        _handed_out.update(ports)
        return ports


def free_port() -> int:
    """One TCP port that is free on 127.0.0.1 (bind to port 0, read it back, close)."""
    return free_ports(1)[0]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(path_or_name: str) -> str:
    """Return the path of a binary (or plugin file) the test needs.

    A bare name is looked up in /usr/bin and /usr/sbin first (Debian's DCMTK/Orthanc, not a
    same-named pynetdicom console script), then on PATH. When it is missing the test is
    skipped -- except in CI (``CI=true``), where it fails: real-peer tests must run there.
    """
    found: str | None = None
    if os.sep in path_or_name:
        p = Path(path_or_name)
        if p.is_file() and (p.suffix == ".so" or os.access(p, os.X_OK)):
            found = str(p)
    else:
        for d in (DCMTK_BIN_DIR, "/usr/sbin"):
            cand = Path(d) / path_or_name
            if cand.is_file() and os.access(cand, os.X_OK):
                found = str(cand)
                break
        if found is None:
            found = shutil.which(path_or_name)
    if found is None:
        msg = f"required tool {path_or_name!r} is not installed; {INSTALL_HINT}"
        if _in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return found


# Servers created and not yet stopped: killed (and their temp dirs removed) at interpreter exit
# as a safety net for a test that forgot to stop one.
_live: set[Any] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        try:
            server.stop(grace=0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _wait_for_tcp(port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group the server leads, wait ``grace`` s, then SIGKILL it."""
    if proc.poll() is None and grace > 0:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Kill whatever is left in the group: the leader if it ignored SIGTERM, and (for
    # dcmqrscp) children forked per association.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - would need a stuck kernel
        pass


def process_group_alive(pgid: int) -> bool:
    """True while any process (zombies excluded) is still in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the command name, which is in parentheses and may contain spaces
        rest = stat.rsplit(")", 1)[1].split()
        state, pgrp = rest[0], int(rest[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


# --------------------------------------------------------------------------------------------
# test data
# --------------------------------------------------------------------------------------------

_UID_NAMESPACE = uuid.UUID("6c1f6f0e-3a7d-4c4e-9d7e-2f1b8a7c9e01")


def stable_uid(*parts: object) -> str:
    """A deterministic UID for ``parts``: ``2.25.`` + the integer of a name-based UUID (v5)."""
    name = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


_SOP_CLASS_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}


def _pixel_bytes(rows: int, columns: int, seed: int) -> bytes:
    # a gentle 12-bit gradient, different per instance, little endian unsigned 16 bit
    values = [((r * 37 + c * 11 + seed * 7) % 4096) for r in range(rows) for c in range(columns)]
    return struct.pack(f"<{len(values)}H", *values)


def make_instance(
    *,
    patient_name: str = "DOE^JANE",
    patient_id: str = "QRD000001",
    patient_birth_date: str = "19700101",
    patient_sex: str = "F",
    study_instance_uid: str | None = None,
    study_date: str = "20240101",
    study_time: str = "120000",
    accession_number: str = "ACC0000001",
    study_description: str = "CT CHEST",
    study_id: str = "1",
    referring_physician_name: str = "",
    series_instance_uid: str | None = None,
    modality: str = "CT",
    series_number: int = 1,
    series_description: str = "",
    sop_instance_uid: str | None = None,
    instance_number: int = 1,
    specific_character_set: str | None = None,
    size: int = 8,
) -> Dataset:
    """A small, valid DICOM instance (Explicit VR Little Endian, with file meta).

    CT -> CT Image Storage, MR -> MR Image Storage, anything else (e.g. CR) -> Secondary Capture
    Image Storage with that Modality. ``size`` is 8 or 16 (an 8x8 or 16x16 12-bit image). UIDs
    that are not given are generated. ``specific_character_set`` (e.g. ``"ISO_IR 100"`` or
    ``"ISO_IR 192"``) must be given for a non-ASCII name.
    """
    if size not in (8, 16):
        raise ValueError("size must be 8 or 16")
    modality = modality.upper()
    sop_class = _SOP_CLASS_BY_MODALITY.get(modality, SecondaryCaptureImageStorage)
    study_instance_uid = study_instance_uid or generate_uid()
    series_instance_uid = series_instance_uid or generate_uid()
    sop_instance_uid = sop_instance_uid or generate_uid()

    ds = Dataset()
    if specific_character_set:
        ds.SpecificCharacterSet = specific_character_set
    elif any(ord(ch) > 127 for ch in patient_name + study_description + series_description):
        ds.SpecificCharacterSet = "ISO_IR 192"
    # SOP Common
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    # General Image / Image Type
    if sop_class == SecondaryCaptureImageStorage:
        ds.ImageType = ["DERIVED", "SECONDARY"]
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = study_time
    ds.SeriesTime = study_time
    ds.ContentTime = study_time
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    if sop_class == SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"
    ds.Manufacturer = "QRDOCTOR TEST"
    ds.InstitutionName = "QRDOCTOR TEST HOSPITAL"
    ds.ReferringPhysicianName = referring_physician_name
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description or f"{modality} SERIES {series_number}"
    # Patient
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    # modality specific acquisition attributes (type 1/2 of the CT and MR Image modules)
    if modality == "CT":
        ds.KVP = "120"
        ds.SliceThickness = "1.0"
    elif modality == "MR":
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "20"
        ds.EchoTrainLength = "1"
        ds.SliceThickness = "5.0"
        ds.MagneticFieldStrength = "1.5"
    # Study / Series identification
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = study_id
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = "" if sop_class != SecondaryCaptureImageStorage else ["L", "P"]
    if sop_class != SecondaryCaptureImageStorage:
        ds.ImagePositionPatient = [0.0, 0.0, float(instance_number)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.FrameOfReferenceUID = stable_uid("frame-of-reference", series_instance_uid)
        ds.PositionReferenceIndicator = ""
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    if sop_class != SecondaryCaptureImageStorage:
        ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if modality == "CT":
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
    ds.PixelData = _pixel_bytes(size, size, instance_number + series_number * 101)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = "QRDOCTOR_TEST"
    ds.file_meta = meta
    return ds


def dataset_bytes(ds: Dataset) -> bytes:
    """The Part 10 file (preamble, file meta, Explicit VR LE) of ``ds`` as bytes."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# (name, sex, character set or None). The first ones are chosen so that even a 5-study corpus
# exercises PN matching: SMITH/SMITHSON share a prefix, McDonald is mixed case, MÜLLER is not
# ASCII (Latin-1, ISO_IR 100), and SMITH^JANE is a different patient with the family name SMITH.
_SPECIAL_PATIENTS: list[tuple[str, str, str | None]] = [
    ("SMITH^JOHN", "M", None),
    ("SMITHSON^ANNA^MARIE", "F", None),
    ("McDonald^Ronald", "M", None),
    ("MÜLLER^JÜRGEN", "M", "ISO_IR 100"),
    ("NGUYEN^THI^MAI", "F", None),
    ("SMITH^JANE", "F", None),
    ("O'BRIEN^PATRICK", "M", None),
    ("GARCIA^MARIA^ELENA", "F", None),
]
_FAMILY_NAMES = [
    "JOHNSON", "WILLIAMS", "BROWN", "JONES", "MILLER", "DAVIS", "WILSON", "ANDERSON", "TAYLOR",
    "THOMAS", "MOORE", "MARTIN", "JACKSON", "WHITE", "HARRIS", "CLARK", "LEWIS", "ROBINSON",
    "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "HILL", "GREEN", "ADAMS", "BAKER",
    "NELSON", "CARTER", "MITCHELL", "PEREZ", "ROBERTS", "TURNER", "PHILLIPS", "CAMPBELL",
    "PARKER", "EVANS", "EDWARDS", "COLLINS", "KOWALSKI", "ROSSI", "DUBOIS", "TANAKA", "PATEL",
    "ANDERSSON", "SCHMIDT", "SMITHERS", "SMYTHE", "LEE",
]
_MALE_GIVEN = ["JAMES", "ROBERT", "MICHAEL", "WILLIAM", "DAVID", "RICHARD", "JOSEPH", "THOMAS",
               "CHARLES", "DANIEL", "MATTHEW", "ERIK", "HIROSHI", "LUCA", "PIERRE"]
_FEMALE_GIVEN = ["MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN",
                 "JESSICA", "SARAH", "KAREN", "EMILY", "GIULIA", "CLAIRE", "PRIYA", "YUKI"]
_MODALITIES = ["CT", "MR", "CR"]
_STUDY_DESCRIPTIONS = {
    "CT": ["CT CHEST W/O CONTRAST", "CT HEAD", "CT ABDOMEN PELVIS W CONTRAST", "CT SPINE LUMBAR"],
    "MR": ["MR BRAIN W/WO CONTRAST", "MR KNEE LEFT", "MR LUMBAR SPINE", "MR SHOULDER RIGHT"],
    "CR": ["CR CHEST 2 VIEWS", "CR HAND RIGHT", "CR PELVIS AP", "CR ANKLE LEFT"],
}


def make_corpus(
    n_studies: int,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    seed: int = 0,
    size: int = 8,
) -> list[Dataset]:
    """A deterministic (per ``seed``) list of instances forming ``n_studies`` studies.

    Study ``i`` has ``series_per_study`` series of ``instances_per_series`` instances. The first
    patients are the special ones above (shared prefix, mixed case, non-ASCII, shared family
    name); later studies either get a new synthetic patient or, about one in four, are a prior
    study of an existing patient. Modalities cycle CT, MR, CR over the first three studies and are
    random afterwards; study dates spread over 2005-2024. UIDs are derived from the seed, so
    the same call gives the same corpus.
    """
    if n_studies < 0:
        raise ValueError("n_studies must be >= 0")
    rng = random.Random(seed)

    def uid(*parts: object) -> str:
        return stable_uid("corpus", seed, *parts)

    patients: list[dict[str, Any]] = []

    def new_patient() -> dict[str, Any]:
        k = len(patients)
        if k < len(_SPECIAL_PATIENTS):
            name, sex, charset = _SPECIAL_PATIENTS[k]
        else:
            sex = rng.choice("MF")
            given = rng.choice(_MALE_GIVEN if sex == "M" else _FEMALE_GIVEN)
            name, charset = f"{rng.choice(_FAMILY_NAMES)}^{given}", None
        birth = _dt.date(1930, 1, 1) + _dt.timedelta(days=rng.randrange(0, 80 * 365))
        p = {
            "name": name,
            "sex": sex,
            "charset": charset,
            "id": f"QRD{seed % 1000:03d}{k + 1:05d}",
            "birth": birth.strftime("%Y%m%d"),
        }
        patients.append(p)
        return p

    start = _dt.date(2005, 1, 1)
    span_days = (_dt.date(2024, 12, 31) - start).days
    out: list[Dataset] = []
    for i in range(n_studies):
        if i >= len(_SPECIAL_PATIENTS) and patients and rng.random() < 0.25:
            patient = rng.choice(patients)
        else:
            patient = new_patient()
        modality = _MODALITIES[i] if i < len(_MODALITIES) else rng.choice(_MODALITIES)
        study_date = start + _dt.timedelta(days=rng.randrange(0, span_days + 1))
        study_time = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        study_uid = uid("study", i)
        description = rng.choice(_STUDY_DESCRIPTIONS[modality])
        accession = f"ACC{seed % 100:02d}{i + 1:06d}"
        for s in range(series_per_study):
            series_uid = uid("series", i, s)
            for n in range(instances_per_series):
                out.append(
                    make_instance(
                        patient_name=patient["name"],
                        patient_id=patient["id"],
                        patient_birth_date=patient["birth"],
                        patient_sex=patient["sex"],
                        specific_character_set=patient["charset"],
                        study_instance_uid=study_uid,
                        study_date=study_date.strftime("%Y%m%d"),
                        study_time=study_time,
                        accession_number=accession,
                        study_description=description,
                        study_id=str(i + 1),
                        series_instance_uid=series_uid,
                        modality=modality,
                        series_number=s + 1,
                        series_description=f"{description} SERIES {s + 1}",
                        sop_instance_uid=uid("instance", i, s, n),
                        instance_number=n + 1,
                        size=size,
                    )
                )
    return out


def count_studies(datasets: Iterable[Dataset]) -> int:
    """Number of distinct StudyInstanceUIDs in ``datasets``."""
    return len({str(ds.StudyInstanceUID) for ds in datasets})


# --------------------------------------------------------------------------------------------
# Orthanc
# --------------------------------------------------------------------------------------------


# Orthanc settings of a "healthy" test PACS: every operation allowed for any calling AE.
ORTHANC_ALLOW_ALL: dict[str, Any] = {
    "DicomAlwaysAllowEcho": True,
    "DicomAlwaysAllowStore": True,
    "DicomAlwaysAllowFind": True,
    "DicomAlwaysAllowMove": True,
    "DicomAlwaysAllowGet": True,
}


class _ServerProcess:
    """What the two server wrappers share: a process group, a temp dir, start/stop."""

    STOP_GRACE = 5.0
    proc: subprocess.Popen | None
    tmpdir: Path
    log_path: Path

    def start(self) -> Any:  # overridden
        raise RuntimeError("subclasses start their own server")

    def _launch(self, cmd: list[str]) -> None:
        """Start the server in its own process group, logging to log_path (one log per attempt)."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.tmpdir, env=peer_env(), start_new_session=True,
            )
        self.pid = self.proc.pid

    def stop(self, grace: float | None = None, keep_files: bool = False) -> None:
        """SIGTERM the server's process group (SIGKILL after ``grace`` s), remove the temp dir."""
        if self.proc is not None:
            _stop_process_group(self.proc, self.STOP_GRACE if grace is None else grace)
            self.proc = None
        _live.discard(self)
        if not keep_files:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def kill(self) -> None:
        """Stop at once (SIGKILL, no graceful shutdown) and remove the temp dir."""
        self.stop(grace=0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


class OrthancServer(_ServerProcess):
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
        self.aet = aet
        self.dicomweb = dicomweb
        self.start_timeout = start_timeout
        self.overrides: dict[str, Any] = dict(config or {})
        self.store_port: int | None = None
        self.corpus: list[Dataset] = []  # what a fixture loaded, for expectations
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None  # of the last started process (kept after stop)
        self.tmpdir = Path(tempfile.mkdtemp(prefix="qrdoctor-orthanc-"))
        self.log_path = self.tmpdir / "orthanc.log"
        self.config_path = self.tmpdir / "orthanc.json"
        self._pick_ports()
        _live.add(self)

    # -- configuration ------------------------------------------------------------------------

    def _pick_ports(self) -> None:
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

    def start(self) -> OrthancServer:
        if self.proc is not None:
            return self
        binary = ORTHANC_BIN
        if not Path(binary).exists():
            raise PeerStartError(f"{binary} is missing; {INSTALL_HINT}")
        if self.dicomweb and not Path(DICOMWEB_PLUGIN).exists():
            raise PeerStartError(f"{DICOMWEB_PLUGIN} is missing; {INSTALL_HINT}")
        last_error = ""
        for _attempt in range(3):
            self.config_path.write_text(json.dumps(self.config, indent=2))
            self._launch([binary, "--verbose", "--no-jobs", str(self.config_path)])
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    self.get("/system", timeout=1.0)
                except (OSError, RuntimeError, http.client.HTTPException):
                    time.sleep(0.05)
                    continue
                self._check_plugins()
                return self
            code = self.proc.poll()
            _stop_process_group(self.proc, grace=0)
            self.proc = None
            last_error = (
                (f"Orthanc exited with status {code} during start-up" if code is not None else
                 f"Orthanc did not answer GET /system within {self.start_timeout:.0f}s")
                + f" (DICOM port {self.dicom_port}, HTTP port {self.http_port}); "
                f"log {self.log_path}:\n{_tail(self.log_path)}"
            )
            if code is None or "already in use" not in _tail(self.log_path, 200):
                break
            # a port was taken between choosing and binding it: choose again
            self._pick_ports()
        raise PeerStartError(last_error)

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

    def studies(self) -> list[str]:
        """Orthanc IDs of all studies."""
        return self.get("/studies")

    def clear(self) -> None:
        """Delete every patient (and so every study)."""
        for pid in self.get("/patients"):
            self.request("DELETE", f"/patients/{pid}")


# --------------------------------------------------------------------------------------------
# DCMTK dcmqrscp
# --------------------------------------------------------------------------------------------


class DcmqrscpServer(_ServerProcess):
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
        self.aet = aet
        self.peers: dict[str, tuple[str, str, int]] = dict(peers or {})
        self.access = access
        self.restrict_peers = restrict_peers
        self.max_studies = max_studies
        self.extra_args = list(extra_args)
        self.debug = debug
        self.start_timeout = start_timeout
        self.store_port: int | None = None
        self.corpus: list[Dataset] = []  # what a fixture loaded, for expectations
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None  # of the last started process (kept after stop)
        self.tmpdir = Path(tempfile.mkdtemp(prefix="qrdoctor-dcmqrscp-"))
        self.area = self.tmpdir / "area"
        self.area.mkdir()
        self.log_path = self.tmpdir / "dcmqrscp.log"
        self.config_path = self.tmpdir / "dcmqrscp.cfg"
        self.dicom_port = free_port()
        self._stored_studies: set[str] = set()
        _live.add(self)

    @property
    def port(self) -> int:
        return self.dicom_port

    @property
    def target(self) -> str:
        return f"{self.aet}@{LOOPBACK}:{self.dicom_port}"

    def config_text(self) -> str:
        lines = [
            "# written by qrdoctor's tests/peers.py",
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

    def start(self) -> DcmqrscpServer:
        if self.proc is not None:
            return self
        if not Path(DCMQRSCP_BIN).exists():
            raise PeerStartError(f"{DCMQRSCP_BIN} is missing; {INSTALL_HINT}")
        last_error = ""
        for _attempt in range(3):
            self.config_path.write_text(self.config_text())
            cmd = [DCMQRSCP_BIN, "-c", str(self.config_path), "--disable-host-lookup",
                   "-d" if self.debug else "-v", *self.extra_args, str(self.dicom_port)]
            self._launch(cmd)
            deadline = time.monotonic() + self.start_timeout
            if _wait_for_tcp(self.dicom_port, deadline, self.proc) and self._answers(deadline):
                return self
            code = self.proc.poll()
            _stop_process_group(self.proc, grace=0)
            self.proc = None
            last_error = (
                (f"dcmqrscp exited with status {code} during start-up" if code is not None
                 else f"dcmqrscp did not answer an association within {self.start_timeout:.0f}s")
                + f" (port {self.dicom_port}); command {' '.join(cmd)}; "
                f"log {self.log_path}:\n{_tail(self.log_path)}"
            )
            if code is None or "already in use" not in _tail(self.log_path, 200):
                break
            self.dicom_port = free_port()
        raise PeerStartError(last_error)

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



# --------------------------------------------------------------------------------------------
# clients: pynetdicom helpers and DCMTK findscu
# --------------------------------------------------------------------------------------------


def c_echo(port: int, aet: str, calling_ae: str = "QRDOCTOR", host: str = LOOPBACK) -> int | None:
    """C-ECHO with pynetdicom; the status (0 on success) or None if no association."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=aet)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return getattr(status, "Status", None)
    finally:
        assoc.release()


def _identifier(level: str, keys: Mapping[str, Any] | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in (keys or {}).items():
        setattr(ds, keyword, value)
    return ds


_DEFAULT_KEYS = {
    "PATIENT": {"PatientID": "", "PatientName": ""},
    "STUDY": {"StudyInstanceUID": ""},
    "SERIES": {"SeriesInstanceUID": ""},
    "IMAGE": {"SOPInstanceUID": ""},
}


def c_find_with_status(
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    host: str = LOOPBACK,
) -> tuple[list[Dataset], int | None]:
    """C-FIND with pynetdicom: (pending identifiers, final status or None if the peer sent
    none). Raises RuntimeError if the association is not accepted."""
    level = level.upper()
    sop = (StudyRootQueryRetrieveInformationModelFind if model == "study"
           else PatientRootQueryRetrieveInformationModelFind)
    query = _identifier(level, keys if keys is not None else _DEFAULT_KEYS[level])
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
    ae.add_requested_context(sop)
    assoc = ae.associate(host, port, ae_title=aet)
    if not assoc.is_established:
        raise RuntimeError(f"C-FIND association to {aet}@{host}:{port} was not accepted")
    results: list[Dataset] = []
    final: int | None = None
    try:
        set_nodelay(assoc)
        for status, identifier in assoc.send_c_find(query, sop):
            code = getattr(status, "Status", None)
            if code in (0xFF00, 0xFF01):
                results.append(identifier)
            elif code is not None:
                final = int(code)
    finally:
        if assoc.is_established:
            assoc.release()
    return results, final


def c_find(
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    host: str = LOOPBACK,
) -> list[Dataset]:
    """C-FIND with pynetdicom; the pending identifiers. Raises RuntimeError if the association
    fails or the final status is not Success (0x0000) -- note that Orthanc 1.10 ends a query cut
    by ``LimitFindResults``/``LimitFindInstances`` with 0xFE00 (use
    :func:`c_find_with_status`)."""
    results, final = c_find_with_status(port, aet, level, keys, model=model,
                                        calling_ae=calling_ae, host=host)
    if final != 0x0000:
        status = ("no final status (association aborted or timed out)" if final is None
                  else f"final status 0x{final:04X}")
        raise RuntimeError(f"C-FIND to {aet}@{host}:{port} ended with {status}")
    return results


def _findscu_key_args(level: str, keys: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    args = ["-k", f"QueryRetrieveLevel={level}"]
    if keys is None:
        keys = _DEFAULT_KEYS[level]
    if isinstance(keys, Mapping):
        items = [k if v in (None, "") else f"{k}={v}" for k, v in keys.items()]
    else:
        items = list(keys)
    for item in items:
        args += ["-k", item]
    return args


def findscu(
    host: str,
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    timeout: float = 60.0,
) -> list[Dataset]:
    """Run DCMTK's ``findscu`` and return the response identifiers it received.

    ``keys`` is a mapping ``{"PatientName": "SMITH*", "StudyDate": ""}`` or a list of findscu
    ``-k`` strings (``"PatientName=SMITH*"``); an empty value asks for the key as a return key.
    ``model`` is ``study``, ``patient`` or ``patient-study`` (``-S``, ``-P``, ``-O``).
    Responses are written with ``--extract`` into a temp dir and read back with pydicom.
    """
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError("tests only talk to loopback")
    binary = require_tool(FINDSCU_BIN)
    model_flag = {"study": "-S", "patient": "-P", "patient-study": "-O"}[model]
    level = level.upper()
    with tempfile.TemporaryDirectory(prefix="qrdoctor-findscu-") as out:
        cmd = [binary, "-v", model_flag, "-aet", calling_ae, "-aec", aet, "-to", "10",
               "-ta", "10", "-td", str(int(timeout)), "-X", "-od", out,
               *_findscu_key_args(level, keys), host, str(port)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10,
                              stdin=subprocess.DEVNULL, env=peer_env())
        if proc.returncode != 0:
            raise RuntimeError(
                f"findscu exited {proc.returncode}: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
            )
        files = sorted(Path(out).glob("rsp*.dcm"))
        return [pydicom.dcmread(f, force=True) for f in files]


def findscu_count(
    host: str,
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | Sequence[str] | None = None,
    **kwargs: Any,
) -> int:
    """How many responses DCMTK's ``findscu`` gets for this query (see :func:`findscu`)."""
    return len(findscu(host, port, aet, level, keys, **kwargs))


# --------------------------------------------------------------------------------------------
# retrieve helpers: a receiving Storage SCP and a C-MOVE SCU
# --------------------------------------------------------------------------------------------


class StoreReceiver:
    """A pynetdicom Storage SCP on 127.0.0.1:``port`` that keeps what it receives.

    An independent C-MOVE destination for tests (``with StoreReceiver(port) as rx: ...``);
    ``received`` holds the datasets, ``associations`` counts accepted associations and
    ``calling_aes`` the AE titles that connected.
    """

    def __init__(self, port: int, ae_title: str = "QRDOCTOR") -> None:
        self.port = port
        self.ae_title = ae_title
        self.received: list[Dataset] = []
        self.associations = 0
        self.calling_aes: list[str] = []
        self._lock = threading.Lock()
        self._server: Any = None

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.received.append(ds)
        return 0x0000

    def _on_accepted(self, event: Any) -> None:
        with self._lock:
            self.associations += 1
            self.calling_aes.append(str(event.assoc.requestor.ae_title).strip())

    def start(self) -> StoreReceiver:
        from pynetdicom import AllStoragePresentationContexts, evt

        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
        ae.supported_contexts = AllStoragePresentationContexts
        self._server = ae.start_server(
            (LOOPBACK, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store),
                          (evt.EVT_ACCEPTED, self._on_accepted)],
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StoreReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def c_move(
    port: int,
    aet: str,
    destination: str,
    level: str = "SERIES",
    keys: Mapping[str, Any] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    host: str = LOOPBACK,
) -> dict[str, Any]:
    """C-MOVE with pynetdicom; returns the final ``status`` and the sub-operation counts
    (``completed``, ``failed``, ``warning``) of the last response, or ``status`` None when the
    association failed."""
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelMove,
    )

    sop = (StudyRootQueryRetrieveInformationModelMove if model == "study"
           else PatientRootQueryRetrieveInformationModelMove)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
    ae.add_requested_context(sop)
    assoc = ae.associate(host, port, ae_title=aet)
    result: dict[str, Any] = {"status": None, "completed": None, "failed": None,
                              "warning": None}
    if not assoc.is_established:
        return result
    try:
        for status, _ident in assoc.send_c_move(_identifier(level.upper(), keys),
                                                     destination, sop):
            if status is None or "Status" not in status:
                continue
            result["status"] = int(status.Status)
            for key, tag in (("completed", "NumberOfCompletedSuboperations"),
                             ("failed", "NumberOfFailedSuboperations"),
                             ("warning", "NumberOfWarningSuboperations")):
                if tag in status:
                    result[key] = int(status[tag].value)
    finally:
        if assoc.is_established:
            assoc.release()
    return result
