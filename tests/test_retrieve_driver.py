"""The pending-response driver of C-MOVE and C-GET (qrdoctor/dicom/retrieve.py), with a scripted
response stream in place of pynetdicom: final responses, the no-progress watchdog (C-CANCEL,
then A-ABORT), progress seen outside the responses, and the user's cancel."""

from __future__ import annotations

import queue
import threading
import time

import pytest
from pydicom import Dataset

from qrdoctor.dicom.retrieve import Watch, follow

FINISHED = object()


def rsp(status: int, remaining=None, completed=None, failed=None, warning=None, **extra) -> Dataset:
    ds = Dataset()
    ds.Status = status
    for keyword, v in (("NumberOfRemainingSuboperations", remaining), ("NumberOfCompletedSuboperations", completed),
                       ("NumberOfFailedSuboperations", failed), ("NumberOfWarningSuboperations", warning)):
        if v is not None:
            setattr(ds, keyword, v)
    for keyword, v in extra.items():
        setattr(ds, keyword, v)
    return ds


class ScriptedPeer:
    """An association whose responses the test feeds; records C-CANCEL and A-ABORT."""

    def __init__(self, honour_cancel: bool = True) -> None:
        self.inbox: queue.Queue = queue.Queue()
        self.honour_cancel = honour_cancel
        self.cancels: list[tuple[int, int]] = []
        self.aborted = threading.Event()

    def send(self, status: Dataset, identifier: Dataset | None = None) -> None:
        self.inbox.put((status, identifier))

    def send_c_cancel(self, msg_id: int, context_id: int | None = None) -> None:
        self.cancels.append((msg_id, context_id))
        if self.honour_cancel:
            self.send(rsp(0xFE00, 0, 0, 0, 0))

    def abort(self) -> None:
        self.aborted.set()
        self.inbox.put(FINISHED)

    def responses(self):
        while True:
            item = self.inbox.get()
            if item is FINISHED:
                return
            yield item
            if "Status" not in item[0] or item[0].Status not in (0xFF00, 0xFF01):
                return


def watch(stall_s: float = 0.3, deadline_s: float = 10.0, progress=lambda: 0, cancel=None) -> Watch:
    return Watch(stall_s=stall_s, deadline_s=deadline_s, cancel=cancel or threading.Event(), progress=progress)


def test_pending_responses_then_success_are_counted():
    # Given a PACS that reports progress twice and then succeeds
    peer = ScriptedPeer()
    peer.send(rsp(0xFF00, 2, 0, 0, 0))
    peer.send(rsp(0xFF00, 1, 1, 0, 0))
    peer.send(rsp(0x0000, 0, 2, 0, 0))
    # When the driver follows it
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1, watch=watch())
    # Then the final counts, the pending responses and the timings are recorded, nothing cancelled
    assert (run.status, run.completed, run.failed, run.warning, run.remaining) == (0, 2, 0, 0, 0)
    assert run.pending == 2 and run.counts_from == "final"
    assert run.first_response_ms is not None and run.elapsed_ms >= run.first_response_ms
    assert not run.cancel_sent and not run.aborted_by_us and not run.no_final
    assert peer.cancels == []


def test_a_final_failure_keeps_its_comment_and_failed_instances():
    peer = ScriptedPeer()
    ident = Dataset()
    ident.FailedSOPInstanceUIDList = ["1.2.3.1", "1.2.3.2"]
    peer.send(rsp(0xA702, 0, 0, 2, 0, ErrorComment="  no route  "), ident)
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1, watch=watch())
    assert run.status == 0xA702 and run.failed == 2
    assert run.error_comment == "no route"
    assert run.failed_uids == ["1.2.3.1", "1.2.3.2"]


def test_counts_only_in_pending_responses_are_kept_from_the_last_one():
    peer = ScriptedPeer()
    peer.send(rsp(0xFF00, 0, 3, 0, 0))
    peer.send(rsp(0x0000))
    run = follow(peer, peer.responses(), "C-GET", msg_id=1, context_id=3, watch=watch())
    assert run.status == 0 and run.completed == 3 and run.counts_from == "pending"


def test_no_progress_sends_c_cancel_after_the_stall_window():
    # Given a PACS that sends nothing at all but honours C-CANCEL
    peer = ScriptedPeer(honour_cancel=True)
    t0 = time.monotonic()
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=5, watch=watch(stall_s=0.3))
    # Then the watchdog cancelled after about the stall window, and the PACS ended with Cancel
    assert peer.cancels == [(1, 5)]
    assert run.cancel_sent and run.cancel_reason == "no progress for 0.3 s"
    assert run.status == 0xFE00 and not run.aborted_by_us
    assert 0.25 <= run.cancel_ms / 1000 < 1.5
    assert run.longest_stall_ms >= 250
    assert time.monotonic() - t0 < 2.0


def test_an_ignored_c_cancel_is_followed_by_an_abort():
    peer = ScriptedPeer(honour_cancel=False)
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1, watch=watch(stall_s=0.3))
    assert run.cancel_sent and run.aborted_by_us and run.no_final
    assert run.status is None
    assert peer.aborted.is_set()
    # the grace after the C-CANCEL is at least one second
    assert run.elapsed_ms >= 1000 + run.cancel_ms - 50


def test_progress_outside_the_responses_keeps_the_watchdog_quiet():
    # Given objects arriving on other associations while the PACS sends no pending response
    peer = ScriptedPeer()
    arrived = {"n": 0}

    def deliver():
        for _ in range(8):
            time.sleep(0.1)
            arrived["n"] += 1
        peer.send(rsp(0x0000, 0, 8, 0, 0))

    threading.Thread(target=deliver, daemon=True).start()
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1,
                 watch=watch(stall_s=0.35, progress=lambda: arrived["n"]))
    # Then the retrieve ran longer than the stall window without being cancelled
    assert run.status == 0 and not run.cancel_sent
    assert run.elapsed_ms > 700


def test_the_deadline_cancels_even_with_progress():
    peer = ScriptedPeer()
    ticks = iter(range(10**6))
    run = follow(peer, peer.responses(), "C-GET", msg_id=1, context_id=1,
                 watch=watch(stall_s=5.0, deadline_s=0.3, progress=lambda: next(ticks)))
    assert run.cancel_sent and run.cancel_reason == "the check's time limit was reached"
    assert run.status == 0xFE00


def test_the_users_cancel_aborts_at_once():
    peer = ScriptedPeer(honour_cancel=False)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1, watch=watch(stall_s=5.0, cancel=cancel))
    assert run.aborted_by_us and not run.cancel_sent and run.elapsed_ms < 1000


def test_no_response_at_all_is_recorded_as_no_final():
    # pynetdicom yields an empty status when the association ends (peer abort, timeout, close)
    peer = ScriptedPeer()
    peer.send(rsp(0xFF00, 1, 0, 0, 0))
    peer.send(Dataset())
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1, watch=watch())
    assert run.no_final and run.status is None and run.pending == 1 and not run.aborted_by_us


def test_a_broken_response_stream_raises_on_the_callers_thread():
    def broken():
        yield rsp(0xFF00, 1, 0, 0, 0), None
        raise ValueError("undecodable response")

    with pytest.raises(ValueError, match="undecodable"):
        follow(ScriptedPeer(), broken(), "C-MOVE", msg_id=1, context_id=1, watch=watch())
