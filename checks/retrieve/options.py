"""The options of both retrieve checks: what to retrieve, where our Store SCP listens, the
watchdog's no-progress window and how much the receiver takes."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from qrdoctor.core.options import Options
from qrdoctor.dicom.receiver import MIB, Limits


class RetrieveOptions(Options):
    """What to retrieve and where the temporary Store SCP listens (retrieve.move and retrieve.get)."""

    study: str | None = Field(None, description="Study Instance UID to retrieve (default: a small series qrdoctor picks)")
    series: str | None = Field(None, description="Series Instance UID to retrieve")
    patient_id: str | None = Field(None, description="do what a workstation does for this patient: find their studies, retrieve from the most recent (or --study)")
    issuer: str | None = Field(None, description="Issuer of Patient ID that goes with --patient-id")
    retrieve: str = Field("series", description="with --patient-id: retrieve one series of the study, or the whole study ('series' or 'study')")
    workstation_timeout: float = Field(30.0, gt=0, description="seconds a workstation waits for a retrieve; a slower PACS gets a warning")
    keep_files: str | None = Field(None, description="keep the received objects in this folder")
    listen_host: str = Field("0.0.0.0", description="address the temporary Store SCP listens on")
    stall_s: float | None = Field(None, gt=0, description="seconds without progress after which a retrieve counts as stalled (default: twice the timeout, at least 1)")
    max_object_mb: int = Field(512, gt=0, description="largest object the retrieve receiver takes, in MiB; a larger one aborts the retrieve")
    max_total_mb: int = Field(4096, gt=0, description="most data one retrieve may deliver, in MiB; more aborts the retrieve")

    @field_validator("study", "series")
    @classmethod
    def _uid(cls, v: str | None) -> str | None:
        from pydicom.uid import UID

        if v is not None and not UID(v).is_valid:
            raise ValueError(f"{v!r} is not a valid DICOM UID")
        return v

    @field_validator("retrieve")
    @classmethod
    def _what(cls, v: str) -> str:
        if v not in ("series", "study"):
            raise ValueError(f"{v!r}: say 'series' or 'study'")
        return v

    @field_validator("patient_id", "issuer")
    @classmethod
    def _lo(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip() or len(v) > 64 or "\\" in v or any(not c.isprintable() for c in v):
            raise ValueError("a Patient ID or issuer is 1 to 64 printable characters without a backslash (LO)")
        if "*" in v or "?" in v:
            raise ValueError("a Patient ID is matched exactly, as a workstation does: no * or ? wildcards")
        return v

    @field_validator("keep_files")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        if v is None:
            return v
        path = Path(v)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{v} exists and is not a folder")
        if not path.parent.is_dir():
            raise ValueError(f"{v}: the folder {path.parent} does not exist")
        if not os.access(path if path.exists() else path.parent, os.W_OK | os.X_OK):
            raise ValueError(f"{v}: this user may not write there")
        return v

    def limits(self, expected: int | None) -> Limits:
        """The receiver's bounds: objects (expected plus a margin) and bytes (these options)."""
        return Limits(max_objects=Limits.objects_for(expected), max_object_bytes=self.max_object_mb * MIB,
                      max_total_bytes=self.max_total_mb * MIB)

    def stall_window(self, timeout: float) -> float:
        """The no-progress window: ``--stall-s``, else twice the network timeout (at least 1 s)."""
        return float(self.stall_s or max(1.0, 2 * timeout))
