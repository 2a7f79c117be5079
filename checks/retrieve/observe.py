"""What the observe steps of retrieve.move and retrieve.get share: turning what the DICOM layer
saw (a followed retrieve, the receiver, the Store SCP's connections, a failed association) into
the plain data of an observation, and the watchdog's limits for this check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qrdoctor.checks.failures import ProbeRecord, record_probe
from qrdoctor.checks.retrieve.conclude import arrivals
from qrdoctor.checks.retrieve.model import (
    SHOWN_UIDS,
    Aborted,
    Arrivals,
    Inbound,
    LimitHit,
    Received,
    Rejected,
    Run,
    Uncounted,
)
from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.checks.retrieve.select import Choice
from qrdoctor.checks.shared import record_failure
from qrdoctor.core.context import Context
from qrdoctor.core.target import Target
from qrdoctor.dicom.assoc import Opened
from qrdoctor.dicom.find import AssociationFailed
from qrdoctor.dicom.limits import Limits
from qrdoctor.dicom.probe import ProbeResult
from qrdoctor.dicom.receiver import REASONS, Expectation, Receiver
from qrdoctor.dicom.retrieve import Followed, Watch

DEADLINE_MARGIN_S = 2.5  # left of the check's time for what follows the retrieve


def watch(ctx: Context, progress: Callable[[], int] = lambda: 0, stall_cap: float | None = None,
          receiver: Receiver | None = None) -> Watch:
    """The watchdog's limits: the no-progress window and what is left of the check's time; with
    a ``receiver``, a bound it reports exceeded ends the retrieve at once."""
    stall = ctx.option(RetrieveOptions).stall_window(ctx.target.timeout)
    if stall_cap is not None:
        stall = min(stall, stall_cap)
    return Watch(stall_s=stall, deadline_s=max(1.0, ctx.remaining() - DEADLINE_MARGIN_S),
                 cancel=ctx.cancel_event, progress=progress, report=ctx.progress,
                 halt=(lambda: _over_limit(receiver)) if receiver is not None else (lambda: None))


def _over_limit(receiver: Receiver) -> str | None:
    hit = receiver.limit
    return f"the receiver took no more after {hit.describe()}" if hit is not None else None


def expectation(choice: Choice, target: Target) -> Expectation:
    """What the retrieve asked for and who may deliver it (the PACS's own AE title, or any
    association whose C-STOREs name our calling AE title as the Move Originator)."""
    s = choice.subject
    return Expectation(
        study_uid=s.study_uid, series_uid=s.series_uid if s.level in ("SERIES", "IMAGE") else None,
        sop_instance_uids=frozenset(choice.expected_uids) if choice.expected_uids is not None else None,
        pacs_ae=target.called_ae, originator_ae=target.calling_ae)


def limits(ctx: Context, choice: Choice) -> Limits:
    return ctx.option(RetrieveOptions).limits(choice.subject.expected)


def give_time(op: Opened, ctx: Context) -> None:
    """Let the association wait as long as the check may: the watchdog decides when to stop."""
    op.assoc.dimse_timeout = max(5.0, ctx.remaining())
    op.assoc.network_timeout = max(5.0, ctx.remaining())


def recorded_run(run: Followed, op: Opened) -> Run:
    """A followed retrieve as plain data, with the peer's A-ABORT when it ended without answer."""
    ab = op.events.abort if run.status is None and not run.aborted_by_us else None
    return Run(
        operation=run.operation, stall_s=run.stall_s, deadline_s=round(run.deadline_s, 1),
        status=run.status, remaining=run.remaining, completed=run.completed, failed=run.failed,
        warning=run.warning, counts_from=run.counts_from, error_comment=run.error_comment,
        offending_element=run.offending_element, failed_uids=run.failed_uids[:SHOWN_UIDS],
        failed_uid_count=len(run.failed_uids), pending=run.pending, elapsed_ms=round(run.elapsed_ms, 1),
        first_response_ms=None if run.first_response_ms is None else round(run.first_response_ms, 1),
        longest_silence_ms=round(run.longest_silence_ms, 1), longest_stall_ms=round(run.longest_stall_ms, 1),
        cancel_sent=run.cancel_sent, cancel_reason=run.cancel_reason, cancel_ms=run.cancel_ms,
        aborted_by_us=run.aborted_by_us, no_final=run.no_final, backward_steps=run.backward_steps,
        peer_abort=Aborted(source=ab.source, reason=ab.reason) if ab is not None else None)


def received_by(receiver: Receiver) -> Received:
    """The receiver's numbers as plain data."""
    stats: dict[str, Any] = receiver.stats()
    hit = receiver.limit
    return Received(
        directory=str(receiver.directory), kept=receiver.keep, objects=stats["objects"], bytes=stats["bytes"],
        limit=LimitHit(bound=hit.bound, limit=hit.limit, value=hit.value, sop_instance_uid=hit.sop_instance_uid,
                       connection=hit.connection) if hit is not None else None,
        **{k: stats.get(k) for k in ("time_to_first_object_ms", "objects_per_s", "mb_per_s", "longest_pause_ms",
                                     "transfer_syntaxes", "sop_classes", "move_originators", "duplicates",
                                     "write_errors")})


def arrived(expected_uids: list[str] | None, receiver: Receiver) -> Arrivals:
    """What arrived and counts against the expected list, with what arrived and does not count."""
    return arrivals(expected_uids, receiver.uids(), uncounted(receiver))


def uncounted(receiver: Receiver) -> list[Uncounted]:
    """The objects that do not count, grouped by reason, UID lists cut to SHOWN_UIDS."""
    groups = []
    objects = receiver.uncounted()
    for reason in REASONS:
        mine = [o for o in objects if o.verdict == reason]
        if mine:
            groups.append(Uncounted(
                reason=reason, count=len(mine), sop_instance_uids=_first(o.sop_instance_uid for o in mine),
                study_uids=_first(o.study_uid for o in mine), series_uids=_first(o.series_uid for o in mine),
                calling_aes=_first(o.calling_ae for o in mine)))
    return groups


def _first(values: Any) -> list[str]:
    """Distinct non-empty values in the order met, at most SHOWN_UIDS."""
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
            if len(out) == SHOWN_UIDS:
                break
    return out


def inbound_of(record: Any) -> Inbound:
    """One of the Store SCP's connection records as plain data."""
    rj = record.rejection
    return Inbound(
        number=record.number, address=record.address, port=record.port, opened_ms=record.opened_ms,
        calling_ae=record.calling_ae, called_ae=record.called_ae, result=record.result,
        rejection=Rejected(result=rj.result, source=rj.source, reason=rj.reason) if rj is not None else None,
        accepted_contexts=record.accepted_contexts, rejected_contexts=list(record.rejected_contexts),
        stores=record.stores, store_failures=record.store_failures, echoes=record.echoes,
        detail=record.detail, ended=record.ended, closed_ms=record.closed_ms)


def query_failure(ctx: Context, exc: AssociationFailed, timeout: float) -> ProbeRecord:
    """The query association that failed while choosing what to retrieve."""
    return record_failure(ctx, exc, timeout)


def open_failure(ctx: Context, op: Opened, started: float, timeout: float) -> ProbeRecord:
    """The retrieve association that was not established: rejected, aborted, no answer within
    the timeout, or closed without an answer."""
    ev = op.events
    elapsed = (time.monotonic() - started) * 1000
    if ev.protocol_error is not None:
        err = ev.protocol_error
        probe = ProbeResult("protocol-error", elapsed, first_bytes=err.data, detail=err.what)
    elif ev.rejection is not None:
        probe = ProbeResult("rejected", elapsed, rejection=ev.rejection)
    elif ev.abort is not None:
        probe = ProbeResult("aborted", elapsed, abort=ev.abort)
    elif elapsed >= 0.9 * timeout * 1000:
        probe = ProbeResult("silent", elapsed, detail=f"no answer within {timeout:g} s")
    else:
        probe = ProbeResult("closed", elapsed, detail="the association request got no answer")
    return record_probe(ctx, probe, timeout)
