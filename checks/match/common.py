"""What the three matching checks share: the subject they probe, the restricted C-FINDs they
run (observe side), and the compact record each C-FIND leaves in an observation.

Every probe is restricted to one patient (by Patient ID) or one study, so its expected answer
is known exactly and the probe stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from qrdoctor.checks.shared import (
    FindAnswer,
    QuerySession,
    Row,
    accepted_find_models,
    identifier,
    value,
)
from qrdoctor.core.context import Context, Outcome

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


class Prober:
    """Runs one check's restricted C-FINDs in one information model, on one association that
    is opened on first use and re-opened when the PACS closed it after a probe."""

    def __init__(self, ctx: Context, model: str) -> None:
        self.ctx, self.model = ctx, model
        self.session = QuerySession(ctx, [model])

    @property
    def timeout_s(self) -> float | None:
        """The timeout of the association last opened (what a failure finding quotes)."""
        return self.session.timeout_s

    def __enter__(self) -> Prober:
        self.session.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.__exit__(*exc)

    def find(self, level: str, keys: Mapping[str, str], *, returned: Iterable[str] = (),
             charset: str | None = None, keep: int = 0,
             max_matches: int = PROBE_MAX_MATCHES) -> FindAnswer:
        """One C-FIND at ``level`` matching ``keys`` and asking for the ``returned`` keys."""
        self.ctx.raise_if_cancelled()
        returned = tuple(returned) or (("StudyInstanceUID",) if level == "STUDY" else ())
        ds = identifier(level, returned, **keys)
        if charset:
            ds.SpecificCharacterSet = charset
        return self.session.find(self.model, ds, max_matches=max_matches, keep=keep)

    def probe(self, name: str, level: str, keys: Mapping[str, str], **kw: Any) -> FindProbe:
        """A C-FIND whose answer only counts: its record for the observation."""
        out = self.find(level, keys, **kw)
        return FindProbe(name=name, status=out.status, matches=out.matches, cancelled=out.cancelled_by_us)


# -- conclude side ---------------------------------------------------------------------------


def no_subject() -> Outcome:
    return Outcome.skipped("find.levels", NO_SUBJECT)
