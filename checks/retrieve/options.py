"""The options of both retrieve checks: what to retrieve, where our Store SCP listens, the
watchdog's no-progress window and how much the receiver takes."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from qrdoctor.core.imports import library
from qrdoctor.core.options import Options
from qrdoctor.core.target import TargetError, check_readable
from qrdoctor.dicom.limits import MIB, Limits
from qrdoctor.dicom.syntaxes import GROUPS, Profile, ProfileError, parse_profile
from qrdoctor.dicom.tls import StoreTLSOptions, server_context


class RetrieveOptions(Options):
    """What to retrieve and where the temporary Store SCP listens (retrieve.move and retrieve.get)."""

    study: str | None = Field(None, description="Study Instance UID to retrieve (default: a small series qrdoctor picks)")
    series: str | None = Field(None, description="Series Instance UID to retrieve")
    patient_id: str | None = Field(None, json_schema_extra={"phi": "patient_id"}, description="do what a workstation does for this patient: find their studies, retrieve from the most recent (or --study)")
    issuer: str | None = Field(None, json_schema_extra={"phi": "patient_id"}, description="Issuer of Patient ID that goes with --patient-id")
    retrieve: str = Field("series", description="with --patient-id: retrieve one series of the study, or the whole study ('series' or 'study')")
    workstation_timeout: float = Field(30.0, gt=0, description="seconds a workstation waits for a retrieve; a slower PACS gets a warning")
    keep_files: str | None = Field(None, description="keep the received objects in this folder")
    listen_host: str = Field("0.0.0.0", description="address the temporary Store SCP listens on")
    stall_s: float | None = Field(None, gt=0, description="seconds without progress after which a retrieve counts as stalled (default: twice the timeout, at least 1)")
    max_object_mb: int = Field(512, gt=0, description="largest object the retrieve receiver takes, in MiB; a larger one aborts the retrieve")
    max_total_mb: int = Field(4096, gt=0, description="most data one retrieve may deliver, in MiB; more aborts the retrieve")
    store_accept: str = Field("all", description="transfer syntaxes the temporary Store SCP accepts, like a workstation's receiver: 'all', groups (" + ", ".join(GROUPS) + ") or UIDs, combined with commas")
    store_tls_cert: str | None = Field(None, description="run the temporary Store SCP over DICOM TLS with this certificate (PEM)")
    store_tls_key: str | None = Field(None, description="private key (PEM) of --store-tls-cert, when not in the certificate file")
    store_tls_ca: str | None = Field(None, description="CA (PEM) whose client certificate the PACS must present to the TLS Store SCP")
    expect_inbound_ae: str | None = Field(None, description="AE title the PACS is expected to call back from on a C-MOVE (a different one is a warning)")

    @field_validator("store_accept")
    @classmethod
    def _profile(cls, v: str) -> str:
        try:
            return parse_profile(v).text
        except ProfileError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("store_tls_cert", "store_tls_key", "store_tls_ca")
    @classmethod
    def _readable(cls, v: str | None, info) -> str | None:
        if v is None:
            return v
        try:
            return check_readable(v, "--" + str(info.field_name).replace("_", "-"))
        except TargetError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("expect_inbound_ae")
    @classmethod
    def _ae(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip() or len(v) > 16 or "\\" in v or any(not c.isprintable() for c in v):
            raise ValueError("an AE title is 1 to 16 printable characters without a backslash")
        return v.strip()

    @model_validator(mode="after")
    def _tls_together(self) -> RetrieveOptions:
        if (self.store_tls_key or self.store_tls_ca) and not self.store_tls_cert:
            raise ValueError("--store-tls-key and --store-tls-ca need --store-tls-cert")
        tls = self.store_tls()
        if tls is not None:
            try:
                server_context(tls)  # the certificate, its key and the CA load
            except TargetError as exc:
                raise ValueError(str(exc)) from None
        return self

    def profile(self) -> Profile:
        """The receiver profile of --store-accept."""
        return parse_profile(self.store_accept)

    def store_tls(self) -> StoreTLSOptions | None:
        """DICOM TLS for the temporary Store SCP, when --store-tls-cert is given."""
        if not self.store_tls_cert:
            return None
        return StoreTLSOptions(self.store_tls_cert, self.store_tls_key, self.store_tls_ca)

    @field_validator("study", "series")
    @classmethod
    def _uid(cls, v: str | None) -> str | None:
        if v is not None and not library("pydicom.uid").UID(v).is_valid:
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
