"""The explicit registry of checks: stable ids that double as JSON keys and CLI names.

A check is two functions and three declared types::

    tcp = define("network.tcp", stage=Stage.NETWORK, title="TCP reachability",
                 codes=("tcp-refused", ...), observation=TcpObservation, facts=TcpFacts)

    @tcp.observe
    def observe(ctx: Context) -> TcpObservation: ...        # all network I/O, nothing concluded

    @tcp.conclude
    def conclude(obs: TcpObservation, s: Situation) -> Outcome: ...   # pure: no I/O, no clock

``observe`` returns a typed, JSON-serialisable observation; ``conclude`` turns it (with the
target, the options and the results of earlier checks) into an outcome. The runner records every
observation, so ``qrdoctor replay`` can re-run the conclusions of a recorded run without a
network, and a test can replay observations recorded from real servers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from qrdoctor.core import catalog
from qrdoctor.core.model import Stage
from qrdoctor.core.options import Options, SchedulingOptions

if TYPE_CHECKING:
    from qrdoctor.core.context import Context, Outcome, Situation


class Observation(BaseModel):
    """Base class of what a check's ``observe`` step saw: typed and JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class Facts(BaseModel):
    """Base class of a check's facts (the ``facts`` object of its entry in the JSON report).

    Reports read facts through these types (:func:`typed_facts`), never by string keys alone.
    Unknown keys are kept, so a newer report still validates against an older type.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)


ObserveFn = Callable[["Context"], Observation]
ConcludeFn = Callable[[Any, "Situation"], "Outcome"]


@dataclass
class Check:
    id: str
    stage: Stage
    title: str
    requires: tuple[str, ...] = ()
    # Checks that run before this one when they are in the run, without blocking it when they
    # failed or are absent (e.g. dicomweb.qido reads association.models to compare with C-FIND).
    after: tuple[str, ...] = ()
    # The option (a field of ``options``) without which the check does not run at all (e.g.
    # ``dicomweb``: the DICOMweb checks run only when a base URL is given).
    enabled_by: str | None = None
    codes: tuple[str, ...] = ()  # finding codes this check can emit; the runner refuses others
    budget: float = 4.0  # deadline, in multiples of the target's network timeout, plus slack
    observation: type[Observation] = Observation
    facts: type[Facts] | None = None
    options: type[Options] | None = None
    # Scheduling (see core/runner.py): how many associations with the PACS the check holds at
    # once (0: none -- it reads earlier results, or only probes TCP/TLS), and the local resources
    # it must hold alone (``"store-port"``: it listens on the target's store port).
    peer_associations: int = 1
    resources: tuple[str, ...] = ()
    order: int = field(default=0, compare=False)
    observe_fn: ObserveFn | None = field(default=None, compare=False)
    conclude_fn: ConcludeFn | None = field(default=None, compare=False)

    # -- decorators ---------------------------------------------------------------------------
    def observe(self, fn: ObserveFn) -> ObserveFn:
        self.observe_fn = fn
        return fn

    def conclude(self, fn: ConcludeFn) -> ConcludeFn:
        self.conclude_fn = fn
        return fn

    def deadline_for(self, timeout: float) -> float:
        return deadline(self.budget, timeout)

    @property
    def module(self) -> str:
        fn = self.observe_fn or self.conclude_fn
        return fn.__module__ if fn else "?"


def deadline(budget: float, timeout: float) -> float:
    """A check's time limit: its budget in multiples of the network timeout, plus 2 s."""
    return budget * timeout + 2.0


class DeferredCheck:
    """A selected check whose module is not loaded yet (see :class:`qrdoctor.core.runner.Runner`):
    what the catalog says of it is there at once -- id, stage, title, requirements, budget, the
    option that enables it -- and anything else is the registered :class:`Check`'s, whose module
    ``loader`` imports (with the run's other later checks) when it is asked for."""

    def __init__(self, entry: catalog.CheckEntry, loader: Any) -> None:
        self.id = entry.id
        self.stage = Stage[entry.stage.upper()]
        self.title = entry.title
        self.requires = tuple(entry.requires)
        self.after = tuple(entry.after)
        self.budget = entry.budget
        self.enabled_by = catalog.ENABLED_BY.get(entry.id)
        self.module_name = entry.module
        self._loader = loader
        self._check: Check | None = None

    def ready(self) -> bool:
        """Its module is loaded."""
        return self._check is not None or bool(self._loader.loaded)

    def resolve(self) -> Check:
        """The registered check, its module (and the run's other later checks') loaded first."""
        if self._check is None:
            self._loader.load()
            importlib.import_module(self.module_name)
            self._check = get_check(self.id)
        return self._check

    def deadline_for(self, timeout: float) -> float:
        return deadline(self.budget, timeout)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_check", "_loader"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"DeferredCheck({self.id!r}, {'loaded' if self.ready() else 'not loaded'})"


class DuplicateCheckError(RuntimeError):
    pass


_CHECKS: dict[str, Check] = {}

# Where the checks live: the module of each check, by name (:data:`catalog.CHECKS`). The registry
# loads them as plugins -- core never depends on the stages, the stages depend on core -- and
# only those a run selects (importing the retrieve checks alone takes 0.1 s).
# A check runs in its place in the catalog whatever order its module was imported in.
_RUN_ORDER = {e.id: i for i, e in enumerate(catalog.CHECKS)}


def define(
    id: str,
    *,
    stage: Stage,
    title: str,
    observation: type[Observation],
    facts: type[Facts] | None = None,
    options: type[Options] | None = None,
    requires: Iterable[str] = (),
    codes: Iterable[str] = (),
    budget: float = 4.0,
    peer_associations: int | None = None,
    resources: Iterable[str] | None = None,
    after: Iterable[str] = (),
    enabled_by: str | None = None,
) -> Check:
    """Declare a check; attach its steps with ``@chk.observe`` and ``@chk.conclude``.

    ``peer_associations`` and ``resources`` tell the scheduler what the check holds while it
    runs; left out, they follow from the stage (:func:`scheduling_defaults`). ``after`` are
    checks it reads when they ran, without requiring them; ``enabled_by`` names the option of
    ``options`` without which it does not run.
    """
    if enabled_by is not None and (options is None or enabled_by not in options.model_fields):
        raise TypeError(f"check {id!r}: enabled_by={enabled_by!r} is not a field of its options")
    if id in _CHECKS:
        # A second copy of a module (e.g. `import checks.x` next to `qrdoctor.checks.x`)
        # would otherwise register the same check twice and run it twice.
        raise DuplicateCheckError(f"check id {id!r} is already registered by {_CHECKS[id].module}")
    default_assocs, default_resources = scheduling_defaults(stage)
    chk = Check(id=id, stage=stage, title=title, requires=tuple(requires), codes=tuple(codes),
                budget=budget, observation=observation, facts=facts, options=options,
                peer_associations=default_assocs if peer_associations is None else int(peer_associations),
                resources=default_resources if resources is None else tuple(resources),
                after=tuple(after), enabled_by=enabled_by,
                order=_RUN_ORDER.get(id, len(_RUN_ORDER) + len(_CHECKS)))
    _CHECKS[id] = chk
    return chk


STORE_PORT = "store-port"  # the target's store port, where a retrieve check's Store SCP listens


def scheduling_defaults(stage: Stage) -> tuple[int, tuple[str, ...]]:
    """What a check of ``stage`` holds while it runs, unless its definition says otherwise:
    network checks open TCP connections (and TLS handshakes) but no association; every other
    check holds one association with the PACS at a time; retrieve checks also listen on the
    store port for the PACS's C-STORE sub-operations, so no two of them may run at once."""
    if stage is Stage.NETWORK:
        return 0, ()
    if stage is Stage.RETRIEVE:
        return 1, (STORE_PORT,)
    return 1, ()


def requirement_closure(check: Check, by_id: dict[str, Check]) -> set[str]:
    """Every check ``check`` requires or reads (``after``), directly or through them."""
    seen: set[str] = set()
    pending = [*check.requires, *check.after]
    while pending:
        cid = pending.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if cid in by_id:
            pending.extend([*by_id[cid].requires, *by_id[cid].after])
    return seen


def enabled(check: Check, options: Any) -> bool:
    """Whether the run's options enable ``check`` (always, unless it declares ``enabled_by``).
    ``options`` is the run's :class:`~qrdoctor.core.options.RunOptions`."""
    if check.enabled_by is None or check.options is None:
        return True
    return _enables(getattr(options.get(check.options), check.enabled_by, None))


def _enables(value: Any) -> bool:
    """Whether an option's value enables the checks it gates (a URL given: not None, "" or False)."""
    return value is not None and value != "" and value is not False


def load(ids: Iterable[str] | None = None) -> None:
    """Import the modules that register the given checks (every check: None); a check's module
    may register others too (those it imports). Ids the catalog does not know are ignored."""
    wanted = None if ids is None else set(ids)
    for module in dict.fromkeys(e.module for e in catalog.CHECKS if wanted is None or e.id in wanted):
        importlib.import_module(module)


def _in_run_order(checks: Iterable[Check]) -> list[Check]:
    out = sorted(checks, key=lambda c: (c.stage, c.order))
    for c in out:
        if c.observe_fn is None or c.conclude_fn is None:
            raise TypeError(f"check {c.id} lacks its {'observe' if c.observe_fn is None else 'conclude'} step")
    return out


def all_checks() -> list[Check]:
    """Every check (all of them are loaded), in stage order then catalog order."""
    load()
    return _in_run_order(_CHECKS.values())


def _registered(check_id: str) -> Check | None:
    """The check, loading its module if need be (and every check when the catalog lacks it)."""
    if check_id not in _CHECKS:
        load([check_id])
    if check_id not in _CHECKS:
        all_checks()
    return _CHECKS.get(check_id)


def get_check(check_id: str) -> Check:
    chk = _registered(check_id)
    if chk is None:
        raise KeyError(check_id)
    return chk


def option_models(checks: Iterable[Check] | None = None) -> list[type[Options]]:
    """The distinct option models the checks declare, in check order, then the run's own
    (:class:`SchedulingOptions`); field names are unique."""
    models: list[type[Options]] = []
    owner: dict[str, type[Options]] = {name: SchedulingOptions for name in SchedulingOptions.model_fields}
    for c in checks if checks is not None else all_checks():
        if c.options is None or c.options in models:
            continue
        for name in c.options.model_fields:
            if name in owner:
                raise TypeError(f"option {name!r} is declared by both {owner[name].__name__} and {c.options.__name__}")
            owner[name] = c.options
        models.append(c.options)
    return [*models, SchedulingOptions]


def declared_option_models(check_ids: Iterable[str]) -> list[type[Options]]:
    """The distinct option models these checks declare, in their order, imported from their own
    modules (:data:`catalog.OPTION_MODELS`) without loading the checks, then
    :class:`SchedulingOptions`."""
    models: list[type[Options]] = []
    for cid in check_ids:
        path = catalog.OPTION_MODELS.get(cid)
        if path is None:
            continue
        module, _, name = path.partition(":")
        model = getattr(importlib.import_module(module), name)
        if model not in models:
            models.append(model)
    return [*models, SchedulingOptions]


def enabled_by_options(check_id: str, flat: dict[str, Any]) -> bool:
    """:func:`enabled`, from the catalog and the run's flat option values, without loading the check."""
    option = catalog.ENABLED_BY.get(check_id)
    if option is None:
        return True
    return _enables(flat.get(option))


def typed_facts(check_id: str, facts: dict[str, Any]) -> Facts:
    """A check's facts read through its declared type (the base type for an unknown check)."""
    chk = {c.id: c for c in all_checks()}.get(check_id)
    model = chk.facts if chk is not None and chk.facts is not None else Facts
    return model.model_validate(facts or {})


class UnknownCheckError(KeyError):
    pass


def select(ids: Iterable[str] | None, *, optional: bool = False) -> list[Check]:
    """The checks to run for ``--only``: the named ones plus everything they require; without
    ids, every check but those an option must enable (``enabled_by``: the DICOMweb checks), unless
    ``optional`` (the runner then keeps those the run's options enable).

    Only their modules are imported (and what those import): ``--only network.tcp`` loads no
    C-FIND, matching or retrieve check."""
    ids = list(ids or ())
    if not ids:
        every = all_checks()
        return every if optional else [c for c in every if c.enabled_by is None]
    load(catalog.requirement_closure(ids))
    wanted: dict[str, Check] = {}
    pending = list(ids)
    while pending:
        cid = pending.pop()
        if cid in wanted:
            continue
        chk = _registered(cid)
        if chk is None:
            raise UnknownCheckError(cid)
        wanted[cid] = chk
        pending.extend(chk.requires)
    return _in_run_order(wanted.values())
