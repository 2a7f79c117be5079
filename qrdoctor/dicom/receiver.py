"""Keeping what arrives by C-STORE: one file per object, and the numbers about the arrivals.

:class:`Receiver` is shared by the two ways objects reach us: the temporary Store SCP of a C-MOVE
(:mod:`qrdoctor.dicom.storescp`, which streams each data set into :meth:`Receiver.open_object`)
and the C-STORE sub-operations of a C-GET on our own association (:meth:`Receiver.handle_store`,
a pynetdicom event handler). Each file gets File Meta Information (PS3.10) in front of the data
set exactly as it was sent, never decoded.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

from qrdoctor.dicom.dimse import element, text

log = logging.getLogger("qrdoctor.dicom.storescp")

PREAMBLE = b"\x00" * 128 + b"DICM"
_UID_FILE = re.compile(r"^[0-9.]{1,64}$")
_IMPLEMENTATION_VERSION = "QRDOCTOR"


def uid_name(uid: str) -> str:
    """A readable name for a UID (``CT Image Storage``), or the UID itself."""
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001 - a malformed UID from the peer is shown as it came
        return uid
    return name if name and name != uid else uid


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str,
              source_ae: str | None = None) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1) for a received data set."""
    body = b"".join([
        element(0x00020001, "OB", b"\x00\x01", explicit=True),
        element(0x00020002, "UI", text(sop_class), explicit=True),
        element(0x00020003, "UI", text(sop_instance), explicit=True),
        element(0x00020010, "UI", text(transfer_syntax), explicit=True),
        element(0x00020012, "UI", text(str(PYNETDICOM_IMPLEMENTATION_UID)), explicit=True),
        element(0x00020013, "SH", text(_IMPLEMENTATION_VERSION, b" "), explicit=True),
        element(0x00020016, "AE", text(source_ae, b" "), explicit=True) if source_ae else b"",
    ])
    return PREAMBLE + element(0x00020000, "UL", len(body).to_bytes(4, "little"), explicit=True) + body


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
