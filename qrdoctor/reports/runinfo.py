"""What a vendor's support desk asks first: how qrdoctor was run, as whom, from where, when, and
what the PACS said it is.

Read from an (already redacted) report only: the command line, the target's identity, the
``network.tcp``, ``association.echo`` and ``retrieve.move`` facts and the tool's versions.
"""

from __future__ import annotations

from typing import Any

from qrdoctor.core.model import CheckResult, Finding, Report
from qrdoctor.core.target import DEFAULT_CALLING_AE

NOT_RECORDED = "not recorded"

# Implementation Version Names that name a DICOM toolkit; many products are built on these, so
# the name says which library answered, not which PACS.
TOOLKIT_PREFIXES = (
    ("OFFIS_DCMTK", "DCMTK"),
    ("PYNETDICOM", "pynetdicom"),
    ("DCM4CHE", "dcm4che"),
)


def _check(report: Report, check_id: str) -> CheckResult | None:
    return next((c for c in report.checks if c.id == check_id), None)


def _fact(report: Report, check_id: str, name: str) -> Any:
    c = _check(report, check_id)
    return c.facts.get(name) if c is not None else None


def peer_version_name(report: Report) -> str | None:
    """The Implementation Version Name of the PACS's A-ASSOCIATE-AC, when the report holds it."""
    value = _fact(report, "association.echo", "peer_implementation")
    return value if isinstance(value, str) and value else None


def toolkit_note(version_name: str | None) -> str | None:
    """A note when the version name is a toolkit's (OFFIS_DCMTK_367, PYNETDICOM_304, ...)."""
    if not version_name:
        return None
    upper = version_name.upper()
    for prefix, toolkit in TOOLKIT_PREFIXES:
        if upper.startswith(prefix):
            return (f"The Implementation Version Name {version_name} names the DICOM toolkit the "
                    f"PACS is built on ({toolkit}), not the PACS product or its version; products "
                    "from several vendors send the same name.")
    return None


def tested_identity(report: Report) -> str | None:
    """Whose registration the run tested, when it was qrdoctor's own default identity rather
    than the workstation's: a pass then says nothing about the workstation, and a rejection may
    not apply to it."""
    t = report.target
    if DEFAULT_CALLING_AE not in (t.calling_ae, t.move_ae):
        return None
    roles = [r for r, ae in (("calling AE title", t.calling_ae), ("C-MOVE destination", t.move_ae))
             if ae == DEFAULT_CALLING_AE]
    port = f" with a temporary receiver on port {t.store_port}" if t.store_port else ""
    return (f"This run used qrdoctor's own identity, {DEFAULT_CALLING_AE}, as {' and '.join(roles)}{port}. "
            f"It shows how the PACS treats {DEFAULT_CALLING_AE}, not the workstation: the workstation's "
            "own entry in the PACS's node list (its AE title, address and receiving port) was not "
            "tested. To test as the workstation, run qrdoctor on it with its AE titles and receiving "
            "port (--calling-ae, --move-ae, --store-port; stop its own DICOM receiver first so the "
            "port is free).")


def serial_retries(report: Report) -> str | None:
    """What the run did when the PACS turned away one of its parallel associations: which checks
    were run again on their own (their results are those runs')."""
    retried = [c.id for c in report.checks if c.facts.get("retried_serially")]
    if not retried:
        return None
    n = len(retried)
    return (f"The PACS turned away an association of qrdoctor's while another of its associations "
            f"was open. {n} check{'s' if n > 1 else ''} ({', '.join(retried)}) "
            f"{'were' if n > 1 else 'was'} run again on {'their' if n > 1 else 'its'} own, and "
            f"{'their results are those' if n > 1 else 'its result is that'} of the second "
            f"run{'s' if n > 1 else ''}; the rest of the run held one association at a time. A PACS "
            "may limit how many associations it accepts at once from one AE title: a workstation "
            "that opens several at once (querying while it fetches priors) may be turned away the "
            "same way.")


def _advertised(report: Report) -> str:
    """Where the PACS must reach qrdoctor's receiver: --advertise, else qrdoctor's guess (the
    ``receiver_address`` of ``network.tcp``, or the address the retrieve's Store SCP used)."""
    given = report.target.advertise
    if given:
        return given
    guess = _fact(report, "network.tcp", "receiver_address")
    if not guess:
        store = _fact(report, "retrieve.move", "store")
        guess = store.get("advertised_address") if isinstance(store, dict) else None
    if guess:
        return f"{guess} (qrdoctor's guess: no address was given with --advertise)"
    return NOT_RECORDED


def _local_address(report: Report) -> str:
    local = _fact(report, "network.tcp", "local_address")
    if not local:
        return NOT_RECORDED
    return f"{local} (the address our connection to the PACS left from; behind NAT the PACS sees a different one)"


def _max_pdu(report: Report) -> str:
    """The maximum PDU lengths both ways, from the C-ECHO association's negotiation."""
    theirs = _fact(report, "association.echo", "peer_max_pdu")
    ours = _fact(report, "association.echo", "our_max_pdu")
    if theirs is None and ours is None:
        return NOT_RECORDED

    def shown(value: Any) -> str:
        if value is None:
            return NOT_RECORDED
        return "no limit stated (0)" if value == 0 else f"{value} bytes"

    return f"the PACS receives up to {shown(theirs)}; qrdoctor receives up to {shown(ours)}"


def _utc(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("+00:00") + " UTC" if iso.endswith("+00:00") else iso


def _versions(report: Report) -> str:
    t = report.tool
    parts = [f"qrdoctor {t.version}"]
    parts += [f"{name} {value}" for name, value in (("pynetdicom", t.pynetdicom), ("pydicom", t.pydicom),
                                                    ("Python", t.python)) if value]
    return ", ".join(parts)


def run_info(report: Report) -> list[tuple[str, str]]:
    """(label, value) rows: the run's facts for a support ticket, in the order they are asked."""
    t = report.target
    return [
        ("Command line", report.command_line or NOT_RECORDED),
        ("Started", _utc(report.started_at)),
        ("PACS", f"{t.called_ae} at {t.host}:{t.port}" if t.dimse else t.label),
        *([("DICOMweb base URL", t.dicomweb)] if t.dicomweb else []),
        *(_dimse_rows(report) if t.dimse else []),
        ("Versions", _versions(report)),
        ("Operating system", report.tool.os or NOT_RECORDED),
    ]


def _dimse_rows(report: Report) -> list[tuple[str, str]]:
    """The rows about the DIMSE side (none in a DICOMweb-only run)."""
    t = report.target
    uid = _fact(report, "association.echo", "peer_implementation_class_uid")
    version_name = peer_version_name(report)
    return [
        ("Calling AE title", t.calling_ae),
        ("Move destination AE title", t.move_ae),
        ("Store SCP port", str(t.store_port) if t.store_port else "chosen at run time"),
        ("Advertised address (where the PACS must connect back)", _advertised(report)),
        ("Local address", _local_address(report)),
        ("PACS Implementation Class UID", uid if isinstance(uid, str) and uid else NOT_RECORDED),
        ("PACS Implementation Version Name", version_name or NOT_RECORDED),
        ("Maximum PDU length", _max_pdu(report)),
    ]


def _key_rows(f: Finding) -> list[dict[str, Any]] | None:
    rows = f.evidence.get("keys")
    if not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(r, dict) and isinstance(r.get("key"), str) for r in rows):
        return None
    return rows


def note_summary(f: Finding) -> str:
    """A note's one line. Findings that list keys per query model (return keys) name each key
    once, with the levels, states and models it was seen in."""
    summary = " ".join(f.summary.split())
    rows = _key_rows(f)
    head, sep, _ = summary.partition(": ")
    if rows is None or not sep:
        return summary
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        model = MODEL_NAMES.get(str(r.get("model")), str(r.get("model") or ""))
        grouped.setdefault((r["key"], str(r.get("state") or ""), str(r.get("level") or "")), []).append(model)
    parts = []
    for (key, state, level), models in grouped.items():
        where = " and ".join(dict.fromkeys(m for m in models if m))
        detail = ", ".join(x for x in (state, f"{level} level" if level else "", where) if x)
        parts.append(f"{key} ({detail})" if detail else key)
    return f"{head}: {'; '.join(parts)}."


MODEL_NAMES = {"study_root": "Study Root", "patient_root": "Patient Root",
               "patient_study_only": "Patient/Study Only"}
