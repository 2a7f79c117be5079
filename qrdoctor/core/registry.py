"""The explicit registry of checks: stable ids that double as JSON keys and CLI names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qrdoctor.core.model import Stage

if TYPE_CHECKING:
    from qrdoctor.core.context import Context, Outcome

CheckFn = Callable[["Context"], "Outcome"]


@dataclass(frozen=True)
class Check:
    id: str
    stage: Stage
    title: str
    fn: CheckFn
    requires: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()  # finding codes this check can emit
    budget: float = 4.0  # deadline, in multiples of the target's network timeout, plus slack
    order: int = field(default=0, compare=False)

    def deadline_for(self, timeout: float) -> float:
        return self.budget * timeout + 2.0


class DuplicateCheckError(RuntimeError):
    pass


_REGISTRY: dict[str, Check] = {}


def check(
    id: str,
    *,
    stage: Stage,
    title: str,
    requires: Iterable[str] = (),
    codes: Iterable[str] = (),
    budget: float = 4.0,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check function under a stable id."""

    def register(fn: CheckFn) -> CheckFn:
        if id in _REGISTRY:
            # A second copy of a module (e.g. `import checks.x` next to `qrdoctor.checks.x`)
            # would otherwise register the same check twice and run it twice.
            raise DuplicateCheckError(
                f"check id {id!r} is already registered by {_REGISTRY[id].fn.__module__}; "
                f"refusing the copy in {fn.__module__}"
            )
        _REGISTRY[id] = Check(
            id=id,
            stage=stage,
            title=title,
            fn=fn,
            requires=tuple(requires),
            codes=tuple(codes),
            budget=budget,
            order=len(_REGISTRY),
        )
        return fn

    return register


def all_checks() -> list[Check]:
    """Every registered check, in stage order then registration order."""
    from qrdoctor import checks  # noqa: F401  (importing registers the stage modules)

    return sorted(_REGISTRY.values(), key=lambda c: (c.stage, c.order))


def get_check(check_id: str) -> Check:
    all_checks()
    return _REGISTRY[check_id]


class UnknownCheckError(KeyError):
    pass


def select(ids: Iterable[str] | None) -> list[Check]:
    """The checks to run for ``--only``: the named ones plus everything they require."""
    checks = all_checks()
    if not ids:
        return checks
    by_id = {c.id: c for c in checks}
    wanted: set[str] = set()
    pending = list(ids)
    while pending:
        cid = pending.pop()
        if cid not in by_id:
            raise UnknownCheckError(cid)
        if cid not in wanted:
            wanted.add(cid)
            pending.extend(by_id[cid].requires)
    return [c for c in checks if c.id in wanted]
