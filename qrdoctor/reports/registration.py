"""The registration request: the node entry the PACS administrator is asked to add.

A pure function of the report: the calling AE title (the node that queries), the move
destination AE title, the address the PACS must connect to for C-MOVE (``network.tcp``'s
``receiver_address``, flagged when it is only qrdoctor's guess), the receiving port, and whether
DICOM TLS is used each way. The Markdown report and the support bundle's README carry it when a
finding asks for a node entry on the PACS; the TUI copies it to the clipboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qrdoctor.core.model import Report
from qrdoctor.core.target import DEFAULT_CALLING_AE

# Findings whose fix is (or may be) a node entry on the PACS: the calling AE title unknown, the
# move destination unknown, the PACS never reaching the receiver or calling it by another title.
REGISTRATION_CODES = frozenset({"calling-ae-rejected", "move-destination-unknown", "move-no-inbound",
                                "move-called-ae-mismatch"})
# Of those, the ones where an entry may exist with a wrong address, port or title.
CORRECTION_CODES = frozenset({"move-no-inbound", "move-called-ae-mismatch"})


@dataclass(frozen=True)
class Registration:
    calling_ae: str
    move_ae: str
    address: str | None  # where the PACS must connect for C-MOVE; None when not recorded
    address_is_guess: bool  # the local end of our connection, not an address given with --advertise
    port: int | None  # the receiving port; None when the operating system chose one at run time
    tls_queries: bool  # the workstation queries the PACS over DICOM TLS
    tls_receiver: bool  # the receiver the run used accepted DICOM over TLS
    default_identity: bool  # qrdoctor's own AE title, not the workstation's, was used
    asked_by: tuple[str, ...]  # the finding codes that ask for a node entry, in report order


def _facts(report: Report, check_id: str) -> dict[str, Any]:
    return next((c.facts for c in report.checks if c.id == check_id), {})


def registration(report: Report) -> Registration:
    """The node entry this run's identity needs on the PACS."""
    t = report.target
    tcp = _facts(report, "network.tcp")
    address = t.advertise or tcp.get("receiver_address") or None
    guess = not t.advertise and bool(tcp.get("receiver_address_is_guess", True))
    options = getattr(report, "_options", None) or {}
    asked = tuple(dict.fromkeys(f.code for c in report.checks for f in c.findings
                                if f.code in REGISTRATION_CODES))
    return Registration(
        calling_ae=t.calling_ae, move_ae=t.move_ae or t.calling_ae,
        address=address if isinstance(address, str) else None, address_is_guess=guess,
        port=t.store_port or None, tls_queries=t.tls is not None,
        tls_receiver=bool(options.get("store_tls_cert")),
        default_identity=DEFAULT_CALLING_AE in (t.calling_ae, t.move_ae), asked_by=asked,
    )


def wanted(report: Report) -> bool:
    """Whether the reports carry the request: a finding asks for a node entry on the PACS. A run
    with qrdoctor's default identity and no such finding needs no request (the PACS already
    accepted that identity); the run's section on whose registration was tested covers it."""
    return bool(registration(report).asked_by)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _address(r: Registration) -> str:
    if r.address is None:
        return "address: this workstation's address (not recorded in this run)"
    if r.address_is_guess:
        return (f"address {r.address} (as seen from this computer; behind NAT or a VPN the PACS "
                "may know it by another address)")
    return f"address {r.address}"


def _port(r: Registration) -> str:
    return f"port {r.port}" if r.port else "port: the workstation's receiving port (this run used one chosen at run time)"


def _tls(r: Registration) -> str:
    if r.tls_queries == r.tls_receiver:
        return f"TLS {_yes(r.tls_queries)}"
    return f"TLS {_yes(r.tls_receiver)} for delivering images, {_yes(r.tls_queries)} for queries"


def request_lines(r: Registration) -> list[str]:
    """The request, one node per line, then a note when the identity was qrdoctor's own."""
    ask = "Please add or correct DICOM node" if CORRECTION_CODES & set(r.asked_by) else "Please add DICOM node"
    if r.move_ae == r.calling_ae:
        lines = [f"{ask}: AE title {r.calling_ae}, {_address(r)}, {_port(r)}, "
                 f"{_tls(r)}; used for queries and as the C-MOVE destination."]
    else:
        lines = [f"{ask}: AE title {r.calling_ae}, TLS {_yes(r.tls_queries)}; "
                 "used for queries.",
                 f"{ask}: AE title {r.move_ae}, {_address(r)}, {_port(r)}, "
                 f"TLS {_yes(r.tls_receiver)}; used as the C-MOVE destination."]
    if r.default_identity:
        lines.append(f"{DEFAULT_CALLING_AE} is qrdoctor's own test identity: for the workstation "
                     "itself, the entry needs its own AE title and receiving port instead.")
    return lines


def request_text(report: Report) -> str:
    """The registration request as plain text, for the clipboard or a ticket."""
    return "\n".join(request_lines(registration(report)))
