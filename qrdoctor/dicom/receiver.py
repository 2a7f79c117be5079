"""Keeping what arrives by C-STORE: one file per object, the numbers about the arrivals, and
which arrivals count.

:class:`Receiver` is shared by the two ways objects reach us: the temporary Store SCP of a C-MOVE
(:mod:`qrdoctor.dicom.storescp`, which streams each data set into :meth:`Receiver.open_object`)
and the C-STORE sub-operations of a C-GET on our own association (:meth:`Receiver.handle_store`,
a pynetdicom event handler). Each file gets File Meta Information (PS3.10) in front of the data
set exactly as it was sent, never decoded; files are private to this user (0600, in a 0700
directory).

What arrives is untrusted. An object counts as arrived only when it came from the PACS (the
association's calling AE title is the PACS's, or the C-STORE names our C-MOVE as its
originator), its SOP Instance UID was expected, and the Study and Series Instance UIDs in its
data set (read by :mod:`qrdoctor.dicom.peek`) are the ones asked for. Every other object is
recorded with the reason it does not count, and its file is deleted at once. :class:`Limits`
bounds the number of objects and the bytes, per object and in total: exceeding one raises
:class:`LimitExceeded` (the Store SCP aborts that association) and is kept as :attr:`Receiver.limit`.

Temporary directories are registered process-wide until they are discarded:
:func:`remove_temporary_directories` (also run at exit) removes whatever a run that was
interrupted left behind.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from qrdoctor.core.imports import library
from qrdoctor.dicom.dimse import element, text
from qrdoctor.dicom.limits import MIB, Limits
from qrdoctor.dicom.pdu import IMPLEMENTATION_UID
from qrdoctor.dicom.peek import Identity, identity_of_file

log = logging.getLogger("qrdoctor.dicom.storescp")

PREAMBLE = b"\x00" * 128 + b"DICM"
_UID_FILE = re.compile(r"^[0-9.]{1,64}$")
_IMPLEMENTATION_VERSION = "QRDOCTOR"
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

COUNTED = "counted"
# Why an object that arrived does not count, in the order they are tested.
UNEXPECTED_SENDER = "unexpected-sender"  # neither the PACS's calling AE nor our C-MOVE as originator
UNREADABLE = "unreadable"  # no Study Instance UID could be read from its data set
OTHER_STUDY = "other-study"
OTHER_SERIES = "other-series"
NOT_REQUESTED = "not-requested"  # right study (and series), but a SOP Instance UID not expected
REASONS = (UNEXPECTED_SENDER, UNREADABLE, OTHER_STUDY, OTHER_SERIES, NOT_REQUESTED)


# ----------------------------------------------------------------------------------------------
# process-wide cleanup of temporary directories
# ----------------------------------------------------------------------------------------------

_temporary: set[Path] = set()
_temporary_lock = threading.Lock()


def remove_temporary_directories() -> list[Path]:
    """Remove every temporary receiver directory not yet discarded; the ones removed.

    For a process that ends while a retrieve runs (SIGINT, SIGTERM, or a check abandoned at its
    deadline): the CLI's signal handler calls it, and it runs at interpreter exit.
    """
    with _temporary_lock:
        paths = list(_temporary)
        _temporary.clear()
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    return paths


atexit.register(remove_temporary_directories)


def _register(path: Path) -> None:
    with _temporary_lock:
        _temporary.add(path)


def _unregister(path: Path) -> None:
    with _temporary_lock:
        _temporary.discard(path)


# ----------------------------------------------------------------------------------------------
# what was asked for, and the bounds
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What the retrieve asked for and who may deliver it; a field left None is not checked."""

    study_uid: str | None = None
    series_uid: str | None = None  # None for a STUDY-level retrieve
    sop_instance_uids: frozenset[str] | None = None  # None when no IMAGE-level C-FIND listed them
    pacs_ae: str | None = None  # the PACS's AE title: its own associations deliver
    originator_ae: str | None = None  # our calling AE: a C-STORE naming it as Move Originator delivers

    def from_pacs(self, calling_ae: str | None, originator_ae: str | None) -> bool:
        """Whether an object stored on an inbound association came from the PACS."""
        if self.pacs_ae is None and self.originator_ae is None:
            return True
        return (calling_ae is not None and calling_ae == self.pacs_ae) or \
            (originator_ae is not None and originator_ae == self.originator_ae)

    def verdict(self, uid: str, ident: Identity, inbound: bool, calling_ae: str | None,
                originator_ae: str | None) -> str:
        """COUNTED, or the reason the object does not count."""
        if inbound and not self.from_pacs(calling_ae, originator_ae):
            return UNEXPECTED_SENDER
        if self.study_uid is not None:
            if not ident.readable:
                return UNREADABLE
            if ident.study_uid != self.study_uid:
                return OTHER_STUDY
            if self.series_uid is not None and ident.series_uid != self.series_uid:
                return OTHER_SERIES
        if self.sop_instance_uids is not None and uid not in self.sop_instance_uids:
            return NOT_REQUESTED
        return COUNTED


@dataclass(frozen=True)
class LimitHit:
    """A bound that was exceeded: which (``objects``, ``object-bytes``, ``total-bytes``), the
    limit, the value reached, and where."""

    bound: str
    limit: int
    value: int
    sop_instance_uid: str = ""
    connection: int = 0  # Inbound.number, 0 on the C-GET association

    def describe(self) -> str:
        what = {"objects": f"more than {self.limit} objects",
                "object-bytes": f"an object larger than {self.limit // MIB} MiB",
                "total-bytes": f"more than {self.limit // MIB} MiB in all"}[self.bound]
        return f"{what} ({self.value} {'objects' if self.bound == 'objects' else 'bytes'})"


class LimitExceeded(Exception):
    """A delivery went past a :class:`Limits` bound."""

    def __init__(self, hit: LimitHit) -> None:
        super().__init__(hit.describe())
        self.hit = hit


# ----------------------------------------------------------------------------------------------
# the files
# ----------------------------------------------------------------------------------------------


def _file_name(uid: str) -> str:
    return uid if _UID_FILE.match(uid) else f"object-{abs(hash(uid)):x}"


def uid_name(uid: str) -> str:
    """A readable name for a UID (``CT Image Storage``), or the UID itself."""
    try:
        name = library("pydicom.uid").UID(uid).name
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
        element(0x00020012, "UI", text(IMPLEMENTATION_UID), explicit=True),
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
    calling_ae: str | None = None  # of the inbound association (None on a C-GET association)
    study_uid: str | None = None  # read from the data set
    series_uid: str | None = None
    verdict: str = COUNTED


@dataclass
class _Totals:
    """The receiver's running counts, for the bounds."""

    objects: int = 0  # C-STORE requests begun
    bytes: int = 0


class Receiver:
    """Keeps what arrives by C-STORE: a file per object, and the numbers about the arrivals.

    Thread-safe: the sub-operations of a C-MOVE may come in on several associations at once.
    """

    def __init__(self, directory: Path | str | None = None, keep: bool = False,
                 expect: Expectation | None = None, limits: Limits | None = None) -> None:
        """Files go to ``directory`` (a new temporary directory when None). :meth:`discard`
        deletes them at the end unless ``keep`` is true (and a directory was given)."""
        self.keep = bool(keep and directory is not None)
        self.expect = expect or Expectation()
        self.limits = limits or Limits()
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="qrdoctor-retrieve-"))
            self._made_directory = True
            _register(self.directory)
        else:
            self.directory = Path(directory)
            self._made_directory = not self.directory.exists()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.objects: list[Received] = []  # every object that arrived, counted or not
        self.duplicates = 0
        self.write_errors: list[str] = []
        self.limit: LimitHit | None = None
        self.started = time.monotonic()
        self.last_activity = self.started
        self._seen: set[str] = set()  # the SOP Instance UIDs that counted
        self._totals = _Totals()
        self._lock = threading.Lock()

    def discard(self) -> None:
        """Delete the received files (and the temporary directory) unless they are kept."""
        if self.keep:
            return
        if self._made_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            _unregister(self.directory)
        else:
            for f in [*self.directory.glob("*.dcm"), *self.directory.glob("*.part")]:
                f.unlink(missing_ok=True)

    def mark_start(self) -> None:
        """The moment the retrieve request left: the time to the first object counts from here."""
        self.started = self.last_activity = time.monotonic()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def path_for(self, uid: str) -> Path:
        """Where an object that counts is kept (a SOP Instance UID never becomes a path)."""
        return self.directory / f"{_file_name(uid)}.dcm"

    def part_path(self, uid: str, connection: int) -> Path:
        """Where an object is written while it arrives and until it is judged."""
        return self.directory / f"{_file_name(uid)}.{connection}.part"

    # -- the bounds --------------------------------------------------------------------------
    def _exceeded(self, hit: LimitHit) -> LimitExceeded:
        with self._lock:
            if self.limit is None:
                self.limit = hit
        log.debug("receiver limit exceeded: %s", hit.describe())
        return LimitExceeded(hit)

    @property
    def closed(self) -> bool:
        """A bound was exceeded: nothing more is taken."""
        return self.limit is not None

    def begin_object(self, uid: str, connection: int) -> None:
        """A C-STORE request arrived; raises LimitExceeded past the object bound."""
        with self._lock:
            self._totals.objects += 1
            n = self._totals.objects
        bound = self.limits.max_objects
        if self.limit is not None:
            raise LimitExceeded(self.limit)
        if bound is not None and n > bound:
            raise self._exceeded(LimitHit("objects", bound, n, uid, connection))

    def take_bytes(self, n: int, object_size: int, uid: str, connection: int) -> None:
        """``n`` more bytes of an object now ``object_size`` long; LimitExceeded past a bound."""
        with self._lock:
            self._totals.bytes += n
            total = self._totals.bytes
        if object_size > self.limits.max_object_bytes:
            raise self._exceeded(LimitHit("object-bytes", self.limits.max_object_bytes, object_size, uid,
                                          connection))
        if total > self.limits.max_total_bytes:
            raise self._exceeded(LimitHit("total-bytes", self.limits.max_total_bytes, total, uid, connection))

    # -- writing -----------------------------------------------------------------------------
    def open_object(self, uid: str, sop_class: str, transfer_syntax: str,
                    source_ae: str | None = None, connection: int = 0) -> BinaryIO:
        """A file (private to this user) to stream one data set into, its file meta information
        already written; :meth:`add` judges it, :meth:`drop` deletes it."""
        fd = os.open(self.part_path(uid, connection), _FILE_FLAGS, 0o600)
        f = os.fdopen(fd, "wb")
        f.write(file_meta(sop_class, uid, transfer_syntax, source_ae))
        return f

    def drop(self, uid: str, connection: int = 0) -> None:
        """Delete the file of an object that was not completed or does not count."""
        try:
            self.part_path(uid, connection).unlink(missing_ok=True)
        except OSError:
            pass

    def add(self, record: Received) -> str:
        """Judge a completed object (its file written by :meth:`open_object`) and keep the
        record; the verdict. Only an object that counts keeps its file."""
        part = self.part_path(record.sop_instance_uid, record.connection)
        ident = identity_of_file(str(part), record.transfer_syntax)
        record.study_uid, record.series_uid = ident.study_uid, ident.series_uid
        record.verdict = self.expect.verdict(record.sop_instance_uid, ident, record.connection != 0,
                                             record.calling_ae, record.move_originator_ae)
        with self._lock:
            if record.verdict == COUNTED:
                if record.sop_instance_uid in self._seen:
                    self.duplicates += 1
                self._seen.add(record.sop_instance_uid)
            self.objects.append(record)
            self.last_activity = record.at
        try:
            if record.verdict == COUNTED:
                os.replace(part, self.path_for(record.sop_instance_uid))
            else:
                part.unlink(missing_ok=True)
        except OSError as exc:
            self.failed_write(record.sop_instance_uid, exc)
        return record.verdict

    def failed_write(self, uid: str, exc: BaseException) -> None:
        with self._lock:
            self.write_errors.append(f"{uid}: {type(exc).__name__}: {exc}")
            self.last_activity = time.monotonic()
        log.debug("C-STORE of %s could not be written: %s", uid, exc)

    def handle_store(self, event: Any) -> int:
        """pynetdicom EVT_C_STORE handler (the C-GET association): keep the data set as sent.

        pynetdicom has the whole data set in memory by now; past a bound the object is refused
        (0xA700) and :attr:`limit` set, for the retrieve's watchdog to abort the association.
        """
        req = event.request
        uid = str(req.AffectedSOPInstanceUID or "")
        sop_class = str(req.AffectedSOPClassUID or "")
        ts = str(event.context.transfer_syntax)
        try:
            self.begin_object(uid, 0)
            with req.DataSet.getbuffer() as body:
                size = len(body)
                self.take_bytes(size, size, uid, 0)
                with self.open_object(uid, sop_class, ts) as f:
                    f.write(body)
        except LimitExceeded:
            return 0xA700  # Refused: out of resources
        except OSError as exc:
            self.failed_write(uid, exc)
            return 0xA700
        self.add(Received(uid, sop_class, ts, size, time.monotonic(), 0))
        return 0x0000

    # -- what arrived ------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Objects that arrived, counted or not (the watchdog's progress)."""
        return len(self.objects)

    def uids(self) -> set[str]:
        """The SOP Instance UIDs of the objects that count."""
        with self._lock:
            return set(self._seen)

    def uncounted(self) -> list[Received]:
        """The objects that arrived but do not count (see :meth:`Expectation.verdict`)."""
        with self._lock:
            return [o for o in self.objects if o.verdict != COUNTED]

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
