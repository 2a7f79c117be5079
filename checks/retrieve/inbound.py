"""The way back, from the receiver's record (issue 13): the inbound associations as facts, and
the findings about who called back, TLS on the way back and PDUs longer than we declared.

Pure functions of :class:`~qrdoctor.dicom.inbound.ReceiverRecord` (recorded by the Store SCP of
retrieve.move, or built for the C-GET association by retrieve.get): they run again on replay.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from qrdoctor.checks.retrieve.model import ContextFact, Inbound, InboundFact, StoreTallyFact
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Finding, Severity, actions
from qrdoctor.dicom.dimse import hex_status
from qrdoctor.dicom.inbound import (
    AssociationRecord,
    InboundRecord,
    ProposedContext,
    ReceiverRecord,
    uid_label,
)
from qrdoctor.dicom.syntaxes import TRANSFER_SYNTAXES_NOT_SUPPORTED, syntax_name

CLIENT_HELLO = "tls"  # InboundRecord.result: a TLS ClientHello reached our plain receiver
NO_TLS = "tls-failed"  # InboundRecord.result: no TLS handshake on our TLS receiver


def sop_class_name(uid: str) -> str:
    """``CT Image Storage (1.2.840.10008.5.1.4.1.1.2)``, or the UID alone when it has no name."""
    label = uid_label(uid)
    return f"{label} ({uid})" if label != uid else uid


# ----------------------------------------------------------------------------------------------
# facts
# ----------------------------------------------------------------------------------------------


def _per_context(a: AssociationRecord) -> dict[int, tuple[int, int]]:
    """C-STOREs and failed C-STOREs per context id, from the tally (every C-STORE is counted
    there, under the SOP class of the request and the transfer syntax of its context)."""
    out: dict[int, tuple[int, int]] = {}
    for t in a.tally:
        cx = next((cx for cx in a.contexts if cx.result == 0 and cx.abstract_syntax == t.sop_class
                   and cx.transfer_syntax == t.transfer_syntax), None)
        if cx is None:
            continue
        stores, failures = out.get(cx.id, (0, 0))
        out[cx.id] = (stores + t.count, failures + (t.count if t.status != 0 else 0))
    return out


def context_fact(cx: ProposedContext, stores: tuple[int, int] | None = None) -> ContextFact:
    fact = ContextFact(id=cx.id, sop_class=sop_class_name(cx.abstract_syntax),
                       transfer_syntaxes=[syntax_name(ts) for ts in cx.transfer_syntaxes],
                       answer=cx.outcome)
    if cx.transfer_syntaxes_proposed > len(cx.transfer_syntaxes):
        fact.transfer_syntaxes_proposed = cx.transfer_syntaxes_proposed
    if cx.transfer_syntax:
        fact.transfer_syntax = syntax_name(cx.transfer_syntax)
    if cx.why:
        fact.why = cx.why
    if stores is not None:
        fact.stores, fact.store_failures = stores
    return fact


def association_facts(a: AssociationRecord) -> dict[str, Any]:
    """The fields of :class:`InboundFact` one association record fills in."""
    per_context = _per_context(a)
    out: dict[str, Any] = {
        "max_pdu_peer": a.max_pdu_peer, "max_pdu_ours": a.max_pdu_ours, "largest_pdu": a.largest_pdu,
        "contexts_proposed": a.contexts_proposed,
        "contexts": [context_fact(cx, per_context.get(cx.id)) for cx in a.contexts],
    }
    if a.implementation_class_uid:
        out["implementation_class_uid"] = a.implementation_class_uid
    if a.implementation_version_name:
        out["implementation_version_name"] = a.implementation_version_name
    if a.oversized is not None:
        out["oversized_pdus"] = a.oversized.count
    if a.tally:
        out["store_tally"] = [StoreTallyFact(
            sop_class=sop_class_name(t.sop_class) if t.sop_class != "other" else "other",
            transfer_syntax=syntax_name(t.transfer_syntax) if t.transfer_syntax not in ("", "other")
            else t.transfer_syntax or "none", status=hex_status(t.status), count=t.count) for t in a.tally]
    return out


def enrich(fact: InboundFact, rec: InboundRecord | None) -> InboundFact:
    """An inbound connection's fact with what the receiver recorded about it (additive)."""
    if rec is None:
        return fact
    if rec.tls:
        fact.tls = rec.tls_version or "TLS"
    if rec.tls_client_hello:
        fact.tls_client_hello = True
    if rec.association is not None:
        for key, value in association_facts(rec.association).items():
            setattr(fact, key, value)
    return fact


def by_number(receiver: ReceiverRecord | None) -> dict[int, InboundRecord]:
    return {r.number: r for r in receiver.inbound} if receiver is not None else {}


# ----------------------------------------------------------------------------------------------
# what our receiver refused
# ----------------------------------------------------------------------------------------------


def rejections(r: Inbound, records: dict[int, InboundRecord]) -> tuple[list[str], list[str]]:
    """The SOP classes our receiver refused on this connection, and those it refused for want of
    a transfer syntax it accepts (with the syntaxes proposed), by the per-context outcomes."""
    rec = records.get(r.number)
    if rec is not None and rec.association is not None:
        items = [(cx.abstract_syntax, cx.result, [syntax_name(ts) for ts in cx.transfer_syntaxes[:4]]
                  + (["..."] if cx.transfer_syntaxes_proposed > 4 else []))
                 for cx in rec.association.rejected()]
    else:  # a recording from before the receiver's record
        items = [(str(cx.get("abstract_syntax", "")), cx.get("result"), list(cx.get("transfer_syntaxes", []))[:4])
                 for cx in r.rejected_contexts]
    classes = sorted({sop_class_name(uid) for uid, result, _ in items if result != TRANSFER_SYNTAXES_NOT_SUPPORTED})
    formats = sorted({f"{sop_class_name(uid)} offered only in {', '.join(names) or 'no transfer syntax'}"
                      for uid, result, names in items if result == TRANSFER_SYNTAXES_NOT_SUPPORTED})
    return classes, formats


# ----------------------------------------------------------------------------------------------
# who called back
# ----------------------------------------------------------------------------------------------


def plain_ip(address: str) -> str:
    """An address as compared: IPv4-mapped IPv6 (``::ffff:10.0.0.5``) as IPv4, brackets dropped."""
    text = address.strip("[]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def pacs_addresses(s: Situation) -> set[str]:
    """The PACS's addresses: what network.tcp resolved its host to, or the host itself when it
    is an IP address (empty when neither is known)."""
    known = {plain_ip(a) for a in s.facts("network.tcp").get("addresses") or [] if isinstance(a, str)}
    if not known:
        host = plain_ip(s.target.host)
        try:
            ipaddress.ip_address(host)
            known = {host}
        except ValueError:
            pass
    return known


def other_callers(s: Situation, receiver: ReceiverRecord | None, expect_ae: str | None,
                  ev: dict, not_attributed: set[str] = frozenset()) -> Finding | None:
    """Associations of the PACS that reached our receiver under another calling AE title than
    the PACS's (or ``--expect-inbound-ae``), or from another address than the PACS's.

    An association is the PACS's when it calls under the PACS's AE title, or when it stored
    objects and its calling AE title is not among ``not_attributed`` (the senders whose objects
    named neither the PACS nor our C-MOVE as originator: a third party, reported apart)."""
    if receiver is None:
        return None
    t = s.target
    expected_ae = expect_ae or t.called_ae
    ours = pacs_addresses(s)
    callers: dict[tuple[str, str], int] = {}
    for r in receiver.inbound:
        if r.association is None:
            continue
        ae, address = r.association.calling_ae, plain_ip(r.address)
        if ae != t.called_ae and (ae in not_attributed or not r.association.stores_total):
            continue
        if ae != expected_ae or (ours and address not in ours):
            callers[(ae, address)] = callers.get((ae, address), 0) + 1
    if not callers:
        return None
    warn = expect_ae is not None and any(ae != expect_ae for ae, _ in callers)
    who = "; ".join(f"calling AE title {ae} from {address} ({n} association(s))"
                    for (ae, address), n in callers.items())
    titles = sorted({ae for ae, _ in callers})
    addresses = sorted({address for _, address in callers})
    known = ", ".join(sorted(ours)) or t.host
    expected = (f"the AE title {expect_ae} given with --expect-inbound-ae" if expect_ae
                else f"the PACS's own AE title {t.called_ae}")
    summary = (f"The PACS's deliveries for the C-MOVE to {t.move_ae} came under another identity than "
               f"{expected} at {known}: {who}.")
    allow = (f"A workstation that accepts associations only from {t.called_ae} at {known} rejects these "
             f"deliveries. In the workstation's receiver, allow the calling AE title(s) "
             f"{', '.join(titles)} from {', '.join(addresses)} (its list of known or allowed DICOM nodes).")
    pacs = (f"If {t.called_ae} is meant to deliver under {expect_ae}, set the AE title it uses for "
            f"outgoing C-STORE sub-operations to {expect_ae} (in a clustered PACS, on every node that "
            f"sends), or tell the workstation's administrator which title to allow."
            if warn else None)
    return s.finding(
        "move-inbound-other-caller", Severity.WARN if warn else Severity.INFO, summary,
        actions(pacs=pacs, workstation=allow),
        callers=[{"calling_ae": ae, "address": address, "associations": n}
                 for (ae, address), n in callers.items()],
        pacs_ae=t.called_ae, pacs_addresses=sorted(ours), expected_ae=expected_ae, **ev)


# ----------------------------------------------------------------------------------------------
# TLS on the way back
# ----------------------------------------------------------------------------------------------


def tls_mismatch(s: Situation, receiver: ReceiverRecord | None, received: int, port: int | None,
                 ev: dict) -> Finding | None:
    """A TLS ClientHello on our plain receiver, or a connection without TLS to our TLS receiver."""
    if receiver is None:
        return None
    t = s.target
    hello = [r for r in receiver.inbound if r.result == CLIENT_HELLO or r.tls_client_hello]
    plain = [r for r in receiver.inbound if r.result == NO_TLS]
    if not hello and not plain:
        return None
    severity = Severity.WARN if received else Severity.FAIL
    shown = [{"connection": r.number, "from": f"{r.address}:{r.port}", "detail": r.detail}
             for r in (hello or plain)[:10]]
    if hello:
        sources = ", ".join(sorted({plain_ip(r.address) for r in hello}))
        return s.finding(
            "move-inbound-tls", severity,
            f"The PACS delivers over TLS: {len(hello)} connection(s) from {sources} to our Store SCP on "
            f"port {port} began with a TLS ClientHello, and our receiver listened for plain DICOM, so "
            f"nothing could be received on them.",
            actions(
                pacs=f"The destination entry for {t.move_ae} on {t.called_ae} uses DICOM over TLS (PS3.15 "
                     f"B.1). If the workstation receives plain DICOM on port {port}, turn TLS off in that "
                     "entry; otherwise keep it and give the workstation's receiver a certificate the "
                     "PACS trusts.",
                workstation=f"If the site delivers over TLS, the workstation's receiver must run DICOM "
                            f"over TLS on port {port}, with a certificate the PACS trusts (and the PACS's "
                            "client certificate trusted, if it presents one).",
                tester="Receive as such a workstation: --store-tls-cert FILE --store-tls-key FILE, and "
                       "--store-tls-ca FILE to require the PACS's client certificate."),
            tls_connections=shown, **ev)
    sources = ", ".join(sorted({plain_ip(r.address) for r in plain}))
    plain_dicom = any("plain DICOM" in r.detail for r in plain)
    what = ("sent a plain DICOM A-ASSOCIATE-RQ" if plain_dicom
            else f"did not complete a TLS handshake ({plain[0].detail})")
    return s.finding(
        "move-inbound-tls", severity,
        f"Our Store SCP on port {port} ran DICOM over TLS and {len(plain)} connection(s) from {sources} "
        f"{what}, so nothing could be received on them.",
        actions(
            pacs=(f"The destination entry for {t.move_ae} on {t.called_ae} delivers plain DICOM: if "
                  "workstations receive over TLS, enable TLS in that entry."
                  if plain_dicom else
                  f"Check the TLS settings of the destination entry for {t.move_ae} on {t.called_ae}: "
                  "the PACS must trust the receiver's certificate (its CA), and present a client "
                  "certificate when the receiver requires one; the detail above is what the handshake "
                  "reported."),
            tester=("Without --store-tls-cert, qrdoctor's receiver takes plain DICOM as such a "
                    "workstation does." if plain_dicom else
                    "Check that --store-tls-cert names a certificate the PACS trusts, and that "
                    "--store-tls-ca (client certificates required) is what the site uses.")),
        tls_connections=shown, **ev)


# ----------------------------------------------------------------------------------------------
# PDU sizes
# ----------------------------------------------------------------------------------------------


def oversized_pdus(s: Situation, receiver: ReceiverRecord | None, ev: dict) -> Finding | None:
    """PDUs from the PACS longer than the maximum length our A-ASSOCIATE-AC declared."""
    if receiver is None:
        return None
    over = [(r, r.association) for r in receiver.inbound
            if r.association is not None and r.association.oversized is not None]
    if not over:
        return None
    t = s.target
    r0, a0 = over[0]
    assert a0.oversized is not None
    count = sum(a.oversized.count for _, a in over if a.oversized is not None)
    longest = max(a.largest_pdu for _, a in over)
    aborted = [r.number for r, _ in over if r.ended == "error"]
    end = (f" qrdoctor aborted connection(s) {', '.join(map(str, aborted))}, whose PDU was too long to read."
           if aborted else " qrdoctor read them anyway.")
    return s.finding(
        "move-inbound-pdu-oversized", Severity.WARN,
        f"The PACS sent {count} PDU(s) longer than the maximum length of {a0.max_pdu_ours} bytes our "
        f"receiver declared in its A-ASSOCIATE-AC (the first of type 0x{a0.oversized.pdu_type:02X}, "
        f"{a0.oversized.length} bytes, on connection {r0.number}; the longest {longest} bytes).{end}",
        actions(
            pacs=f"{t.called_ae} must not send a PDU longer than the Maximum Length the receiver "
                 f"declares (PS3.8 D.1): a receiver that enforces it can only abort the association, "
                 f"and the images do not arrive. Report it to the PACS vendor with this evidence "
                 f"(declared {a0.max_pdu_ours} bytes, received {longest} bytes).",
            workstation=f"Until it is corrected, a workstation receiver that declares a maximum PDU "
                        f"length below {longest} bytes may fail these deliveries: raise it to at least "
                        f"{longest} bytes if its configuration allows."),
        max_pdu_ours=a0.max_pdu_ours, oversized_pdus=count, largest_pdu=longest,
        first={"connection": r0.number, "pdu_type": a0.oversized.pdu_type, "length": a0.oversized.length},
        **ev)
