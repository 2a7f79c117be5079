"""The options of both retrieve checks: what to retrieve, where our Store SCP listens, and the
watchdog's no-progress window."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from qrdoctor.core.options import Options


class RetrieveOptions(Options):
    """What to retrieve and where the temporary Store SCP listens (retrieve.move and retrieve.get)."""

    study: str | None = Field(None, description="Study Instance UID to retrieve (default: a small series qrdoctor picks)")
    series: str | None = Field(None, description="Series Instance UID to retrieve")
    keep_files: str | None = Field(None, description="keep the received objects in this folder")
    listen_host: str = Field("0.0.0.0", description="address the temporary Store SCP listens on")
    stall_s: float | None = Field(None, gt=0, description="seconds without progress after which a retrieve counts as stalled (default: twice the timeout, at least 1)")

    @field_validator("study", "series")
    @classmethod
    def _uid(cls, v: str | None) -> str | None:
        from pydicom.uid import UID

        if v is not None and not UID(v).is_valid:
            raise ValueError(f"{v!r} is not a valid DICOM UID")
        return v

    @field_validator("keep_files")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).parent.is_dir():
            raise ValueError(f"{v}: the folder {Path(v).parent} does not exist")
        return v

    def stall_window(self, timeout: float) -> float:
        """The no-progress window: ``--stall-s``, else twice the network timeout (at least 1 s)."""
        return float(self.stall_s or max(1.0, 2 * timeout))
