"""The inbound associations of retrieve.move and the C-GET association of retrieve.get, as a
compact table for the Markdown and HTML reports (issue 13).

Read from the checks' facts (``inbound`` and ``get_association``), as any report written by this
version carries them. A PACS may propose over a hundred presentation contexts (Orthanc 127): the
contexts that carried C-STOREs or were refused are listed first, up to :data:`MAX_ROWS`, and the
rest are summed up in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qrdoctor.core.model import Report

MAX_ROWS = 12  # contexts listed per association
MAX_ASSOCIATIONS = 8  # associations listed per check


@dataclass
class ContextRow:
    sop_class: str
    syntaxes: str  # the proposed transfer syntaxes, in the proposer's order
    answer: str
    stores: str  # "" when none came on it


@dataclass
class AssociationView:
    heading: str  # who called whom, from where, how it ended
    details: list[tuple[str, str]]  # PDU sizes, implementation, TLS
    rows: list[ContextRow]
    more: str = ""  # the contexts not listed, summed up


@dataclass
class InboundSection:
    check_id: str
    title: str
    associations: list[AssociationView] = field(default_factory=list)
    more: str = ""  # associations not listed


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _stores(cx: dict[str, Any]) -> str:
    n, failed = cx.get("stores"), cx.get("store_failures")
    if not n:
        return ""
    return f"{n}" + (f" ({failed} failed)" if failed else "")


def _pdu(value: Any) -> str:
    if value == 0:
        return "0 (no limit)"
    return f"{value} bytes" if isinstance(value, int) else "not recorded"


def association_view(fact: dict[str, Any], get: bool = False) -> AssociationView:
    """One association's fact as a heading, a few details and its contexts, the telling ones first."""
    if get:
        heading = (f"C-GET association {_text(fact.get('calling_ae'))} → {_text(fact.get('called_ae'))} "
                   f"at {_text(fact.get('from'))} (contexts proposed by qrdoctor, answered by the PACS)")
        ours_label, peer_label = "Max PDU we take", "Max PDU the PACS takes"
    else:
        who = (f"{_text(fact.get('calling_ae'))} → {_text(fact.get('called_ae'))}"
               if fact.get("calling_ae") is not None else "no association requested")
        heading = (f"Connection {_text(fact.get('connection'))} from {_text(fact.get('from'))}: {who}, "
                   f"{_text(fact.get('result'))}" + (f", {fact['ended']}" if fact.get("ended") else ""))
        ours_label, peer_label = "Max PDU we declared", "Max PDU the PACS takes"
    details: list[tuple[str, str]] = []
    if "max_pdu_ours" in fact:
        details.append((ours_label, _pdu(fact.get("max_pdu_ours"))))
        details.append((peer_label, _pdu(fact.get("max_pdu_peer"))))
    if fact.get("largest_pdu"):
        details.append(("Longest PDU received", f"{fact['largest_pdu']} bytes"
                        + (f", {fact['oversized_pdus']} longer than declared" if fact.get("oversized_pdus") else "")))
    impl = " ".join(x for x in (_text(fact.get("implementation_version_name")),
                                f"({fact['implementation_class_uid']})" if fact.get("implementation_class_uid") else "")
                    if x)
    if impl:
        details.append(("Implementation", impl))
    if fact.get("tls"):
        details.append(("TLS", _text(fact["tls"])))
    if fact.get("tls_client_hello"):
        details.append(("TLS", "a TLS ClientHello reached the plain receiver: the PACS delivers over TLS"))
    if fact.get("detail"):
        details.append(("Detail", _text(fact["detail"])))
    contexts = [cx for cx in fact.get("contexts") or [] if isinstance(cx, dict)]
    telling = [cx for cx in contexts if cx.get("stores") or cx.get("answer") != "accepted" or cx.get("why")]
    quiet = [cx for cx in contexts if cx not in telling]
    shown = (telling + quiet)[:MAX_ROWS] if len(contexts) > MAX_ROWS else contexts
    rows = [ContextRow(
        sop_class=_text(cx.get("sop_class")),
        syntaxes=", ".join(cx.get("transfer_syntaxes") or [])
        + (f" (of {cx['transfer_syntaxes_proposed']})" if cx.get("transfer_syntaxes_proposed") else ""),
        answer=(f"accepted: {cx['transfer_syntax']}" if cx.get("answer") == "accepted" and cx.get("transfer_syntax")
                else _text(cx.get("answer"))) + (f" ({cx['why']})" if cx.get("why") else ""),
        stores=_stores(cx)) for cx in shown]
    rest = [cx for cx in contexts if cx not in shown]
    more = ""
    if rest:
        accepted = sum(1 for cx in rest if cx.get("answer") == "accepted")
        more = (f"{len(rest)} more context(s) not listed: {accepted} accepted, {len(rest) - accepted} refused, "
                "no C-STORE on them")
    proposed = fact.get("contexts_proposed")
    if isinstance(proposed, int) and proposed > len(contexts):
        more = (more + "; " if more else "") + f"{proposed - len(contexts)} proposed context(s) not recorded"
    return AssociationView(heading, details, rows, more)


def sections(report: Report) -> list[InboundSection]:
    """The inbound associations of retrieve.move and the C-GET association of retrieve.get."""
    out: list[InboundSection] = []
    for c in report.checks:
        facts = c.facts or {}
        if c.id == "retrieve.move" and isinstance(facts.get("inbound"), list) and facts["inbound"]:
            inbound = [f for f in facts["inbound"] if isinstance(f, dict)]
            sec = InboundSection(c.id, "Inbound associations (C-MOVE deliveries to qrdoctor's receiver)",
                                 [association_view(f) for f in inbound[:MAX_ASSOCIATIONS]])
            if len(inbound) > MAX_ASSOCIATIONS:
                sec.more = f"{len(inbound) - MAX_ASSOCIATIONS} more connection(s) in the check's facts"
            if facts.get("store_accept"):
                sec.title += f"; receiver accepts: {facts['store_accept']}"
            out.append(sec)
        elif c.id == "retrieve.get" and isinstance(facts.get("get_association"), dict):
            title = "The C-GET association"
            if facts.get("store_accept"):
                title += f"; receiver accepts: {facts['store_accept']}"
            out.append(InboundSection(c.id, title, [association_view(facts["get_association"], get=True)]))
    return out
