"""What dicomweb.wado observes and the facts it reports (typed, JSON-serialisable)."""

from __future__ import annotations

from typing import Any

from qrdoctor.checks.shared import SparseFacts
from qrdoctor.core.registry import Observation


class QidoStep(Observation):
    """One QIDO-RS request of the instance selection."""

    what: str  # studies | series | instances
    status: int | None = None
    error: str | None = None
    rows: int = 0
    problem: str | None = None  # what is wrong with its DICOM JSON
    preview: str = ""  # the start of an error answer's body


class PartInfo(Observation):
    content_type: str | None = None
    ts_param: str | None = None  # the part's transfer-syntax parameter
    transfer_syntax: str | None = None  # from the Part 10 file meta
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    bytes: int = 0
    unreadable: str | None = None


class VariantRead(Observation):
    """One retrieval of the instance with one Accept header."""

    name: str
    accept: str
    status: int | None = None
    reason: str = ""
    content_type: str | None = None
    bytes: int = 0
    ms: int = 0
    error: str | None = None  # WebError kind
    error_detail: str | None = None
    preview: str = ""
    multipart: bool = False
    complete: bool = True  # False: only the start was read (the instance is larger than qrdoctor reads)
    not_dicom: str | None = None
    problems: list[str] = []
    notes: list[str] = []
    parts: list[PartInfo] = []

    @property
    def success(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transfer_syntax(self) -> str | None:
        return next((p.transfer_syntax for p in self.parts if p.transfer_syntax), None)


class MetadataRead(Observation):
    status: int | None = None
    reason: str = ""
    content_type: str | None = None
    error: str | None = None
    error_detail: str | None = None
    bytes: int = 0
    ms: int = 0
    preview: str = ""
    instances: int | None = None  # datasets in the answer
    problem: str | None = None
    has_sop: bool | None = None  # the selected instance is among them


class WadoObservation(Observation):
    base_url: str
    selection_problem: str | None = None  # credentials that cannot be read
    qido: list[QidoStep] = []
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    series_instances: int | None = None  # NumberOfSeriesRelatedInstances from QIDO-RS
    metadata: MetadataRead | None = None
    variants: list[VariantRead] = []
    urls_checked: int = 0
    foreign_urls: list[dict[str, str]] = []
    exchanges: list[dict[str, Any]] = []


class WadoFacts(SparseFacts):
    base_url: str | None = None
    instance: dict[str, Any] | None = None  # study, series, sop UIDs of the instance retrieved
    metadata: dict[str, Any] | None = None  # status, instances, expected, ms
    variants: dict[str, dict[str, Any]] | None = None  # per Accept variant: status, type, parts, ts, bytes, ms
    retrieve_urls: dict[str, Any] | None = None  # checked, foreign
    requests: list[dict[str, Any]] | None = None
