"""What the PACS did on its way back to our Store SCP, as typed, JSON-serialisable records.

For every inbound connection the temporary Store SCP keeps an :class:`InboundRecord`: the peer's
address, whether it spoke TLS (or sent a TLS ClientHello to our plain receiver), and, once an
A-ASSOCIATE-RQ arrived, an :class:`AssociationRecord` with both AE titles, every proposed
presentation context (abstract syntax and its transfer syntaxes in the PACS's order) and what we
answered, the maximum PDU lengths both ways, the PACS's implementation class UID and version
name, the PDUs larger than the maximum we declared, and each C-STORE's SOP class, transfer syntax
and the status we answered. :class:`ReceiverRecord` holds them all with the receiver's profile.

Everything in here came from the peer and is bounded: text through
:func:`qrdoctor.dicom.pdu.safe_text`, at most :data:`MAX_CONTEXTS` contexts with
:data:`MAX_SYNTAXES` transfer syntaxes each, :data:`MAX_STORES` C-STOREs listed one by one and
:data:`MAX_TALLY` distinct (SOP class, transfer syntax, status) counts, and whatever is beyond a
bound is counted, never kept. Observations are recorded and replayed: these models hold only
plain values (UIDs, numbers, safe text); names are derived from the UIDs by the reader
(:func:`qrdoctor.dicom.syntaxes.syntax_name`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydicom.uid import UID

from qrdoctor.dicom.pdu import Rejection, safe_text
from qrdoctor.dicom.syntaxes import Decision

MAX_CONTEXTS = 128  # the most a PS3.8 A-ASSOCIATE-RQ can carry (odd context ids 1-255)
MAX_SYNTAXES = 16  # transfer syntaxes kept per proposed context
MAX_STORES = 50  # C-STOREs listed one by one per association
MAX_TALLY = 32  # distinct (SOP class, transfer syntax, status) counted per association
UID_TEXT = 64  # a UID is at most 64 characters (PS3.5 9.1); longer peer text is cut
OTHER = "other"


def peer_uid(value: object) -> str:
    """A UID as the peer sent it, made safe to keep and show."""
    return safe_text(str(value) if value is not None else "", limit=UID_TEXT)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProposedContext(_Record):
    """One presentation context the PACS proposed, and our answer."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]  # in the PACS's order; the first MAX_SYNTAXES
    transfer_syntaxes_proposed: int  # how many it proposed in all
    result: int  # PS3.8 9.3.3.2: 0 acceptance, 1 user rejection, 3 abstract syntax, 4 transfer syntaxes
    outcome: str  # accepted | rejected: SOP class | rejected: no accepted transfer syntax
    transfer_syntax: str | None = None  # the one we accepted
    why: str = ""  # why a SOP class was refused

    @classmethod
    def of(cls, d: Decision) -> ProposedContext:
        return cls(id=d.context_id, abstract_syntax=peer_uid(d.abstract_syntax),
                   transfer_syntaxes=[peer_uid(ts) for ts in d.proposed[:MAX_SYNTAXES]],
                   transfer_syntaxes_proposed=len(d.proposed), result=d.result, outcome=d.outcome,
                   transfer_syntax=d.transfer_syntax, why=d.why)


class StoreRecord(_Record):
    """One C-STORE request and the status we answered."""

    context_id: int
    sop_class: str  # Affected SOP Class UID of the request
    transfer_syntax: str  # of the context it came on ("" for a context we never accepted)
    status: int


class StoreTally(_Record):
    """How many C-STOREs had this SOP class, transfer syntax and answered status."""

    sop_class: str  # "other" once MAX_TALLY distinct combinations are counted
    transfer_syntax: str
    status: int
    count: int


class OversizedPDU(_Record):
    """The first PDU longer than the maximum length we declared, and how many there were."""

    pdu_type: int
    length: int  # of the PDU body, as its header announced
    count: int = 1


class AssociationRecord(_Record):
    """An A-ASSOCIATE-RQ that reached us, what it proposed and how it went."""

    calling_ae: str
    called_ae: str
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    max_pdu_peer: int  # the longest PDU the PACS takes from us; 0 means no limit
    max_pdu_ours: int  # the longest PDU we told it to send us
    contexts: list[ProposedContext] = []  # the first MAX_CONTEXTS
    contexts_proposed: int = 0
    largest_pdu: int = 0  # the longest PDU body received
    oversized: OversizedPDU | None = None
    stores: list[StoreRecord] = []  # the first MAX_STORES
    stores_total: int = 0
    tally: list[StoreTally] = []

    def accepted(self) -> list[ProposedContext]:
        return [cx for cx in self.contexts if cx.result == 0]

    def rejected(self) -> list[ProposedContext]:
        return [cx for cx in self.contexts if cx.result != 0]

    def note_pdu(self, pdu_type: int, length: int) -> None:
        """A PDU body of ``length`` bytes arrived: keep the largest, count those over our maximum."""
        self.largest_pdu = max(self.largest_pdu, length)
        if length <= self.max_pdu_ours:
            return
        if self.oversized is None:
            self.oversized = OversizedPDU(pdu_type=pdu_type, length=length)
        else:
            self.oversized.count += 1

    def note_store(self, context_id: int, sop_class: str, transfer_syntax: str, status: int) -> None:
        sop_class = peer_uid(sop_class)
        self.stores_total += 1
        if len(self.stores) < MAX_STORES:
            self.stores.append(StoreRecord(context_id=context_id, sop_class=sop_class,
                                           transfer_syntax=transfer_syntax, status=status))
        for t in self.tally:
            if (t.sop_class, t.transfer_syntax, t.status) == (sop_class, transfer_syntax, status):
                t.count += 1
                return
        if len(self.tally) >= MAX_TALLY - 1:
            sop_class = transfer_syntax = OTHER
            for t in self.tally:
                if (t.sop_class, t.transfer_syntax, t.status) == (OTHER, OTHER, status):
                    t.count += 1
                    return
        self.tally.append(StoreTally(sop_class=sop_class, transfer_syntax=transfer_syntax, status=status,
                                     count=1))


class InboundRecord(_Record):
    """One inbound TCP connection to the Store SCP (see storescp.Inbound for ``result``)."""

    number: int
    address: str
    port: int
    opened_ms: float
    closed_ms: float | None = None
    result: str = "connected"
    tls: bool = False  # the connection was DICOM over TLS (our receiver runs TLS)
    tls_version: str = ""
    tls_cipher: str = ""
    tls_peer_subject: str = ""  # the PACS's client certificate, when it sent one
    tls_client_hello: bool = False  # a TLS ClientHello reached our plain receiver
    association: AssociationRecord | None = None
    detail: str = ""
    ended: str = ""


class ReceiverRecord(_Record):
    """Everything the Store SCP saw: its profile and TLS, and every connection (bounded)."""

    ae_title: str
    profile: str  # the receiver profile's text: all, uncompressed, ...
    accepted_syntaxes: list[str]  # the transfer syntax UIDs the profile accepts ([] for all)
    sop_classes: str  # any | standard
    max_pdu: int  # the maximum PDU length we declare
    tls: bool = False
    connections: int = 0  # inbound connections in all
    inbound: list[InboundRecord] = []  # the first ones, in full
    not_kept: int = 0  # connections counted but not kept in full


# ----------------------------------------------------------------------------------------------
# the Store SCP's working record of one connection
# ----------------------------------------------------------------------------------------------


@dataclass
class Inbound:
    """One inbound TCP connection to the Store SCP and what became of it (filled in while it
    runs; :meth:`model` is its typed, JSON-serialisable form)."""

    number: int
    address: str
    port: int
    opened_ms: float  # since the SCP started listening
    calling_ae: str | None = None
    called_ae: str | None = None
    # connected | accepted | rejected | aborted | closed | not-dicom | refused
    # | tls (a TLS ClientHello on our plain receiver) | tls-failed (no TLS handshake on our TLS receiver)
    result: str = "connected"
    rejection: Rejection | None = None
    accepted_contexts: int = 0
    rejected_contexts: list[dict] = field(default_factory=list)
    stores: int = 0
    store_failures: int = 0
    echoes: int = 0
    detail: str = ""
    ended: str = ""  # released | aborted by peer | aborted by qrdoctor: ... | closed | idle timeout | stopped
    closed_ms: float | None = None
    association: AssociationRecord | None = None
    tls: dict[str, str] | None = None  # version, cipher, peer_subject of a TLS connection
    tls_client_hello: bool = False

    @property
    def requested(self) -> bool:
        """The peer sent an A-ASSOCIATE-RQ (not just a TCP connection)."""
        return self.calling_ae is not None

    def describe(self) -> str:
        """One line for the protocol transcript."""
        parts = [f"connection {self.number} from {self.address}:{self.port}"]
        if self.tls is not None:
            parts.append(f"over {self.tls.get('version') or 'TLS'}")
        if self.requested:
            parts.append(f"calling AE {self.calling_ae}, called AE {self.called_ae}")
        parts.append(self.result if self.rejection is None else f"rejected {self.rejection.triple}")
        if self.tls_client_hello:
            parts.append("a TLS ClientHello: the PACS delivers over TLS")
        if self.rejected_contexts:
            parts.append(f"{len(self.rejected_contexts)} context(s) refused")
        if self.stores or self.store_failures:
            parts.append(f"{self.stores} object(s), {self.store_failures} refused")
        a = self.association
        if a is not None and a.oversized is not None:
            parts.append(f"{a.oversized.count} PDU(s) longer than the {a.max_pdu_ours} bytes we declared")
        if self.ended:
            parts.append(self.ended)
        return ", ".join(parts)

    def evidence(self) -> dict:
        ev: dict[str, Any] = {"connection": self.number, "from": f"{self.address}:{self.port}",
                              "opened_ms": self.opened_ms, "result": self.result}
        if self.calling_ae is not None:
            ev["calling_ae"] = self.calling_ae
            ev["called_ae"] = self.called_ae
        if self.rejection is not None:
            ev["rejection"] = self.rejection.describe()
        if self.result == "accepted" or self.accepted_contexts:
            ev["accepted_contexts"] = self.accepted_contexts
        if self.rejected_contexts:
            ev["rejected_contexts"] = self.rejected_contexts
        if self.stores or self.store_failures:
            ev["objects"] = self.stores
        if self.store_failures:
            ev["store_failures"] = self.store_failures
        if self.echoes:
            ev["echoes"] = self.echoes
        if self.detail:
            ev["detail"] = self.detail
        if self.ended:
            ev["ended"] = self.ended
        if self.closed_ms is not None:
            ev["closed_ms"] = self.closed_ms
        return ev

    def model(self) -> InboundRecord:
        tls = self.tls or {}
        return InboundRecord(
            number=self.number, address=self.address, port=self.port, opened_ms=self.opened_ms,
            closed_ms=self.closed_ms, result=self.result, tls=self.tls is not None,
            tls_version=tls.get("version", ""), tls_cipher=tls.get("cipher", ""),
            tls_peer_subject=tls.get("peer_subject", ""), tls_client_hello=self.tls_client_hello,
            association=self.association.model_copy(deep=True) if self.association is not None else None,
            detail=self.detail, ended=self.ended)


def rejected_context_evidence(d: Decision) -> dict[str, Any]:
    """A refused context in the shape the retrieve checks' ``rejected_contexts`` carry."""
    return {
        "abstract_syntax": peer_uid(d.abstract_syntax),
        "name": uid_label(d.abstract_syntax),
        "result": d.result,
        "result_str": CONTEXT_RESULTS.get(d.result, f"result {d.result}"),
        "transfer_syntaxes": [uid_label(ts) for ts in d.proposed[:8]],
    }


def uid_label(uid: str) -> str:
    """A readable name for a UID (``CT Image Storage``), or the UID itself made safe."""
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001 - a malformed UID from the peer is shown as it came
        return peer_uid(uid)
    return name if name and name != uid else peer_uid(uid)


CONTEXT_RESULTS = {
    1: "user-rejection",
    2: "no-reason (provider rejection)",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}
