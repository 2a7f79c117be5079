"""The typed data of the retrieve stage: what ``observe`` records and what the report shows.

Observations are plain data (stored in support bundles and replayed by later versions): no
pydicom objects, UID lists cut to :data:`SHOWN_UIDS` with the full count beside them. Facts keep
the JSON report's contract: a key that the report shows only in some runs is declared here and
appears in the dump only when it was set (:class:`~qrdoctor.checks.shared.SparseFacts`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from qrdoctor.checks.shared import SparseFacts
from qrdoctor.core.registry import Observation

SHOWN_UIDS = 20  # UID lists in observations, findings and facts are cut to this many


# ----------------------------------------------------------------------------------------------
# observation parts
# ----------------------------------------------------------------------------------------------


class ImageFind(Observation):
    """How the IMAGE-level C-FIND that listed the expected instances ended."""

    status: str | None
    matches: int
    complete: bool
    error_comment: str | None = None


class Subject(Observation):
    """What the retrieve asked for and what it should bring (patient data left out)."""

    level: str  # SERIES | STUDY | IMAGE
    study_uid: str
    series_uid: str | None = None
    instance_uids: list[str] = []  # the IMAGE-level retrieve keys (a few)
    expected: int | None = None
    expected_source: str = "unknown"
    sop_classes: list[str] = []
    modalities: list[str] = []
    chosen_by: str = ""
    find_model: str = "study_root"
    image_find: ImageFind | None = None
    # with --patient-id (the prior fetch): the patient's studies, how the study was chosen
    # (most-recent | only | named) and the Instance Availability the PACS gave for it
    patient_studies: int | None = None
    prior: str | None = None
    availability: str | None = None
    # the distinct Available Transfer Syntax UIDs (0008,3002) the IMAGE-level C-FIND returned:
    # how the PACS says it holds the instances (most PACS leave it empty)
    available_syntaxes: list[str] = []

    def describe(self) -> str:
        what = {"SERIES": "one series", "STUDY": "one study",
                "IMAGE": f"{len(self.instance_uids)} instances"}[self.level]
        n = f" ({self.expected} instances)" if self.expected is not None and self.level != "IMAGE" else ""
        return f"{what}{n}"


class NoData(Observation):
    """Why nothing could be chosen to retrieve (``kind``), with what the C-FINDs found."""

    kind: str  # no-find-model | no-study | no-listable-series | series-not-found | series-without-study | study-not-found
    evidence: dict[str, str | int | None] = {}


class Rejected(Observation):
    """A decoded A-ASSOCIATE-RJ."""

    result: int
    source: int
    reason: int


class Aborted(Observation):
    """A decoded A-ABORT."""

    source: int
    reason: int


class Run(Observation):
    """How one C-MOVE or C-GET went (see :class:`qrdoctor.dicom.retrieve.Followed`)."""

    operation: str
    stall_s: float  # the no-progress window the watchdog used
    deadline_s: float  # the total time the watchdog allowed
    status: int | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    counts_from: str | None = None
    error_comment: str | None = None
    offending_element: list[str] | None = None
    failed_uids: list[str] = []  # the first SHOWN_UIDS of the Failed SOP Instance UID List
    failed_uid_count: int = 0
    pending: int = 0
    elapsed_ms: float = 0.0
    first_response_ms: float | None = None
    longest_silence_ms: float = 0.0
    longest_stall_ms: float = 0.0
    cancel_sent: bool = False
    cancel_reason: str | None = None
    cancel_ms: float | None = None
    aborted_by_us: bool = False
    no_final: bool = False
    peer_abort: Aborted | None = None
    backward_steps: int = 0  # pending responses whose counters went back


class Uncounted(Observation):
    """Objects that arrived but do not count, grouped by why (see qrdoctor.dicom.receiver)."""

    reason: str  # unexpected-sender | unreadable | other-study | other-series | not-requested
    count: int
    sop_instance_uids: list[str] = []  # the first SHOWN_UIDS
    study_uids: list[str] = []  # the distinct Study Instance UIDs read from them (first SHOWN_UIDS)
    series_uids: list[str] = []
    calling_aes: list[str] = []  # the calling AE titles of the associations that brought them


class Arrivals(Observation):
    """What arrived against what a C-FIND listed (the UID sets reduced to counts and samples)."""

    received: int  # distinct objects that arrived
    arrived_expected: int  # of those, the ones expected (all of them when the list is unknown)
    missing_count: int = 0
    missing_uids: list[str] = []  # the first SHOWN_UIDS expected ones that did not arrive
    unexpected_count: int = 0  # distinct SOP Instance UIDs that arrived but were not expected
    uncounted: list[Uncounted] = []  # every object that arrived and does not count, by reason

    def uncounted_for(self, *reasons: str) -> list[Uncounted]:
        return [u for u in self.uncounted if u.reason in reasons]


class LimitHit(Observation):
    """A bound of the receiver that a delivery exceeded (see qrdoctor.dicom.receiver.Limits)."""

    bound: str  # objects | object-bytes | total-bytes
    limit: int
    value: int
    sop_instance_uid: str = ""
    connection: int = 0  # the inbound connection, 0 on the C-GET association


class Received(Observation):
    """The receiver's numbers (``None`` for what it did not report)."""

    directory: str
    kept: bool
    objects: int
    bytes: int
    time_to_first_object_ms: float | None = None
    objects_per_s: float | None = None
    mb_per_s: float | None = None
    longest_pause_ms: float | None = None
    transfer_syntaxes: dict[str, int] | None = None
    sop_classes: dict[str, int] | None = None
    move_originators: list[dict[str, str | int | None]] | None = None
    duplicates: int | None = None
    write_errors: list[str] | None = None
    limit: LimitHit | None = None


class Inbound(Observation):
    """One inbound connection to our Store SCP and what became of it."""

    number: int
    address: str
    port: int
    opened_ms: float
    calling_ae: str | None = None
    called_ae: str | None = None
    result: str = "connected"
    rejection: Rejected | None = None
    accepted_contexts: int = 0
    rejected_contexts: list[dict[str, Any]] = []
    stores: int = 0
    store_failures: int = 0
    echoes: int = 0
    detail: str = ""
    ended: str = ""
    closed_ms: float | None = None

    @property
    def requested(self) -> bool:
        return self.calling_ae is not None


class UnknownProbe(Observation):
    """The same C-MOVE to a destination no PACS knows."""

    destination: str
    status: int | None
    completed: int | None
    failed: int | None
    elapsed_ms: float
    error_comment: str | None


# ----------------------------------------------------------------------------------------------
# facts
# ----------------------------------------------------------------------------------------------


class ImageFindFact(SparseFacts):
    status: str | None = None
    matches: int | None = None
    complete: bool | None = None
    error_comment: str | None = None


class SubjectFact(SparseFacts):
    level: str | None = None
    study_instance_uid: str | None = None
    chosen_by: str | None = None
    expected: int | None = None
    expected_source: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uids: list[str] | None = None
    modalities: list[str] | None = None
    sop_classes: list[str] | None = None
    image_find: ImageFindFact | None = None


class ContextFact(SparseFacts):
    """One presentation context and its answer, named in words and by UID.

    On an inbound association the PACS proposed it and we answered; on the C-GET association
    we proposed it and the PACS answered."""

    id: int | None = None
    sop_class: str | None = None  # name (UID)
    transfer_syntaxes: list[str] | None = None  # name (UID), in the proposer's order
    transfer_syntaxes_proposed: int | None = None
    answer: str | None = None  # accepted | rejected: SOP class | rejected: no accepted transfer syntax | ...
    transfer_syntax: str | None = None  # the accepted one, name (UID)
    why: str | None = None
    stores: int | None = None  # C-STOREs that came on it
    store_failures: int | None = None  # of those, answered with a status other than Success


class StoreTallyFact(SparseFacts):
    sop_class: str | None = None  # name (UID)
    transfer_syntax: str | None = None  # name (UID)
    status: str | None = None  # 0x0000 ...
    count: int | None = None


class InboundFact(SparseFacts):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    connection: int | None = None
    from_: str | None = Field(None, alias="from")
    opened_ms: float | None = None
    result: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    rejection: str | None = None
    accepted_contexts: int | None = None
    rejected_contexts: list[dict[str, Any]] | None = None
    objects: int | None = None
    store_failures: int | None = None
    echoes: int | None = None
    detail: str | None = None
    ended: str | None = None
    closed_ms: float | None = None
    # from the receiver's record of the association (issue 13)
    tls: str | None = None  # the TLS version of a DICOM-over-TLS connection
    tls_client_hello: bool | None = None  # a TLS ClientHello reached our plain receiver
    max_pdu_peer: int | None = None  # the longest PDU the PACS takes (0: no limit)
    max_pdu_ours: int | None = None  # the longest PDU we declared we take
    largest_pdu: int | None = None  # the longest PDU body the PACS sent
    oversized_pdus: int | None = None  # PDUs longer than max_pdu_ours
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    contexts_proposed: int | None = None
    contexts: list[ContextFact] | None = None
    store_tally: list[StoreTallyFact] | None = None


class StoreFact(SparseFacts):
    listen: str | None = None
    advertised_address: str | None = None
    port: int | None = None
    tls: bool | None = None  # the Store SCP ran DICOM over TLS


class ProbeFact(SparseFacts):
    destination: str | None = None
    status: str | None = None
    completed: int | None = None
    failed: int | None = None
    elapsed_ms: float | None = None
    error_comment: str | None = None


class PriorFetchFact(SparseFacts):
    """The prior fetch (--patient-id): no patient data, only counts and how the study was chosen."""

    patient_studies: int | None = None  # studies a STUDY-level C-FIND found for the Patient ID
    chosen: str | None = None  # most-recent | only | named
    retrieve: str | None = None  # series | study
    instance_availability: str | None = None  # ONLINE | NEARLINE | OFFLINE ... as the PACS said


class RetrieveFacts(SparseFacts):
    """What both retrieve checks report: the three numbers, the subject and the timings."""

    status: str | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    received: int | None = None
    expected: int | None = None
    expected_source: str | None = None
    model: str | None = None
    subject: SubjectFact | None = None
    pending_responses: int | None = None
    duration_ms: float | None = None
    first_response_ms: float | None = None
    longest_response_wait_ms: float | None = None
    time_to_first_object_ms: float | None = None
    objects_per_s: float | None = None
    mb_per_s: float | None = None
    longest_pause_ms: float | None = None
    bytes_received: int | None = None
    transfer_syntaxes: dict[str, int] | None = None
    sop_classes: dict[str, int] | None = None
    move_originators: list[dict[str, Any]] | None = None
    duplicates: int | None = None
    write_errors: list[str] | None = None
    counts_from_last_pending: bool | None = None
    error_comment: str | None = None
    failed_sop_instance_uids: list[str] | None = None
    missing: int | None = None
    unexpected: int | None = None
    cancelled: str | None = None
    aborted_by_qrdoctor: bool | None = None
    not_counted: dict[str, int] | None = None  # objects that arrived and do not count, by reason
    limit_exceeded: str | None = None
    counters_went_back: int | None = None
    workstation_timeout_s: float | None = None  # what a workstation waits (--workstation-timeout)
    prior_fetch: PriorFetchFact | None = None  # with --patient-id: how the study was chosen
    store_accept: str | None = None  # the receiver profile (--store-accept)


class MoveFacts(RetrieveFacts):
    """retrieve.move: the common facts plus what our Store SCP saw."""

    inbound_associations: int | None = None
    inbound_connections: int | None = None
    inbound: list[InboundFact] | None = None
    move_ae: str | None = None
    store: StoreFact | None = None
    kept_files: str | None = None
    unknown_destination_probe: ProbeFact | None = None


class NegotiationFact(SparseFacts):
    storage_classes_from: str | None = None
    proposed_contexts: int | None = None
    storage: dict[str, str] | None = None
    not_proposed: list[str] | None = None


class GetFacts(RetrieveFacts):
    """retrieve.get: the common facts plus the C-GET association's negotiation."""

    offered: bool | None = None
    negotiation: NegotiationFact | None = None
    kept_files: str | None = None
    get_association: InboundFact | None = None  # our C-GET association: what we proposed, what the PACS accepted
