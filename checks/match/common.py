"""What the three matching checks share: the subject they probe, the restricted C-FINDs they
run (observe side), and the compact record each C-FIND leaves in an observation.

Every probe is restricted to one patient (by Patient ID) or one study, so its expected answer
is known exactly and the probe stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from qrdoctor.checks.failures import protocol_error_finding
from qrdoctor.checks.shared import (
    MODEL_LABELS,
    FindAnswer,
    QuerySession,
    Row,
    accepted_find_models,
    identifier,
    value,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Status

PROBE_MAX_MATCHES = 200  # a probe is cancelled after this many matches (its answer is known by then)
NO_SUBJECT = "skipped: no study with a patient ID was returned to probe with"


class Record(BaseModel):
    """Base of the plain-data pieces of a matching observation."""

    model_config = ConfigDict(extra="forbid")


class Subject(Record):
    """The information model and level the probes of a check use."""

    model: str  # "study_root" or "patient_root"
    level: str  # "STUDY" or "PATIENT"


class FindProbe(Record):
    """How one restricted C-FIND ended: its final status and how many matches it returned."""

    name: str
    status: int | None = None  # final status; None when no final response arrived
    matches: int = 0
    cancelled: bool = False  # qrdoctor cancelled it after PROBE_MAX_MATCHES

    @property
    def status_hex(self) -> str | None:
        return None if self.status is None else f"0x{self.status:04X}"

    @property
    def answered(self) -> bool:
        """The PACS answered the probe (success, or cut short by our own C-CANCEL)."""
        return self.status == 0x0000 or self.cancelled

    @property
    def count(self) -> int | None:
        """The number of matches of a probe that ended in success; None for any other end."""
        return self.matches if self.status == 0x0000 else None


# -- observe side: choosing the subject and running probes -----------------------------------


def choose_subject(ctx: Context) -> tuple[Subject, list[Row]] | None:
    """The model, level and sample identifiers (with a Patient ID) that find.levels returned:
    Study Root STUDY if possible, else Patient Root PATIENT; None when there are none."""
    learned = ctx.learned.get("find.levels")
    if learned is None:
        return None
    accepted = accepted_find_models(ctx)
    for model, level in (("study_root", "STUDY"), ("patient_root", "PATIENT")):
        if model in accepted:
            samples = [d for d in learned.samples(model, level) if value(d, "PatientID")]
            if samples:
                return Subject(model=model, level=level), samples
    return None


class Trouble(Record):
    """Why a check's probes stopped early: the PACS broke the protocol, ignored our C-CANCEL,
    or the check's time was up. Its answers after that are not matching behaviour."""

    kind: Literal["protocol-error", "cancel-ignored", "deadline"]
    query: str  # which C-FIND: "a STUDY-level C-FIND in Study Root"
    answer: FindAnswer


class ProbesStopped(Exception):
    """Raised inside a Prober's ``with`` block when its trouble is recorded; the block ends."""


class Prober:
    """Runs one check's restricted C-FINDs in one information model, on one association that
    is opened on first use and re-opened when the PACS closed it after a probe.

    The first answer that cannot be read as matching behaviour (a protocol error, an ignored
    C-CANCEL, the check's time running out) is kept as :attr:`trouble` and ends the ``with``
    block: the observation records it and conclude reports it (:func:`trouble_outcome`)."""

    def __init__(self, ctx: Context, model: str) -> None:
        self.ctx, self.model = ctx, model
        self.session = QuerySession(ctx, [model])
        self.trouble: Trouble | None = None

    @property
    def timeout_s(self) -> float | None:
        """The timeout of the association last opened (what a failure finding quotes)."""
        return self.session.timeout_s

    def __enter__(self) -> Prober:
        self.session.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool:
        stopped = exc[0] is ProbesStopped
        self.session.__exit__(*((None, None, None) if stopped else exc))
        return stopped

    def find(self, level: str, keys: Mapping[str, str], *, returned: Iterable[str] = (),
             charset: str | None = None, keep: int = 0,
             max_matches: int = PROBE_MAX_MATCHES) -> FindAnswer:
        """One C-FIND at ``level`` matching ``keys`` and asking for the ``returned`` keys."""
        self.ctx.raise_if_cancelled()
        returned = tuple(returned) or (("StudyInstanceUID",) if level == "STUDY" else ())
        ds = identifier(level, returned, **keys)
        if charset:
            ds.SpecificCharacterSet = charset
        answer = self.session.find(self.model, ds, max_matches=max_matches, keep=keep)
        kind = ("protocol-error" if answer.protocol_error else "cancel-ignored" if answer.cancel_ignored
                else "deadline" if answer.deadline_reached else None)
        if kind is not None:
            label = MODEL_LABELS.get(self.model, self.model)
            self.trouble = Trouble(kind=kind, query=f"a {level}-level C-FIND in {label}",
                                   answer=answer.model_copy(update={"rows": []}))
            raise ProbesStopped(kind)
        return answer

    def probe(self, name: str, level: str, keys: Mapping[str, str], **kw: Any) -> FindProbe:
        """A C-FIND whose answer only counts: its record for the observation."""
        out = self.find(level, keys, **kw)
        return FindProbe(name=name, status=out.status, matches=out.matches, cancelled=out.cancelled_by_us)


# -- conclude side ---------------------------------------------------------------------------


def no_subject() -> Outcome:
    return Outcome.skipped("find.levels", NO_SUBJECT)


def trouble_outcome(s: Situation, trouble: Trouble) -> Outcome:
    """The outcome of a check whose probes stopped early: a protocol error as its finding; an
    ignored C-CANCEL (find.levels or find.match_limit reports how the PACS handles C-CANCEL)
    or the check's time running out as a skip that says why."""
    a = trouble.answer
    if trouble.kind == "protocol-error":
        f = protocol_error_finding(s, a.protocol_error or "", a.protocol_bytes_hex, f"during {trouble.query}",
                                   matches_before=a.matches)
        return Outcome(summary=f"the PACS broke the protocol during {trouble.query}", findings=[f])
    why = ("the PACS ignored our C-CANCEL" if trouble.kind == "cancel-ignored"
           else "the check's time limit was nearly reached")
    reason = f"probes stopped: {why} during {trouble.query}; matching was not measured"
    if trouble.kind == "deadline":
        reason += " (re-run with a larger --timeout if the PACS is slow)"
    return Outcome(summary=reason, status=Status.SKIPPED, reason=reason)
