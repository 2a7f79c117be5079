"""qrdoctor from another program: run the diagnosis, compare two runs.

::

    from qrdoctor.api import check, diff

    report = check("ORTHANC@10.1.2.3:4242", calling_ae="WS7", only=["find.match_limit"])
    print(report.summary.fail, [c.status for c in report.checks])
    changes = diff(yesterday_report, report)

The options are named as the command line's (``--calling-ae`` is ``calling_ae``, ``--only a,b``
is ``only=["a", "b"]``, ``--probe-limit`` is ``probe_limit``); the report is the model the JSON
Schema describes (:class:`qrdoctor.core.model.Report`). Importing this module starts nothing: no
network, no Textual, no DICOM toolkit until :func:`check` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrdoctor.core.target import Target, TargetError

if TYPE_CHECKING:
    from qrdoctor.core.model import Report
    from qrdoctor.monitor.fleet import NodeRun
    from qrdoctor.reports.diff import Diff

__all__ = ["check", "fleet", "diff", "Target", "TargetError", "OptionError"]

# The command line's target options, by their Python names.
TARGET_OPTIONS = ("calling_ae", "move_ae", "store_port", "advertise", "timeout")
TLS_OPTIONS = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_no_verify")


class OptionError(ValueError):
    """An option that no check declares, or a value of the wrong kind."""


def _tls(values: dict[str, Any]):
    if not any(values.get(k) for k in TLS_OPTIONS):
        return None
    from qrdoctor.core.target import TLSOptions

    if isinstance(values.get("tls"), TLSOptions):
        return values["tls"]
    return TLSOptions(ca_file=values.get("tls_ca"), cert_file=values.get("tls_cert"),
                      key_file=values.get("tls_key"), verify=not values.get("tls_no_verify"))


def _target(target: str | Target, values: dict[str, Any]) -> tuple[Target, dict[str, Any]]:
    """The target with the given overrides, and the saved profile's settings (if it is one)."""
    overrides = {k: values[k] for k in TARGET_OPTIONS if values.get(k) is not None}
    tls = _tls(values)
    if tls is not None:
        overrides["tls"] = tls
    if isinstance(target, Target):
        return (target.replace(**overrides) if overrides else target), {}
    from qrdoctor.core.target import profile_settings, resolve_target

    return resolve_target(target, **overrides), profile_settings(target)


def _run_options(saved: dict[str, Any], given: dict[str, Any]):
    from qrdoctor.core.option_fields import catalog_fields, declared_values, option_owners
    from qrdoctor.core.options import OptionError as CoreOptionError
    from qrdoctor.core.options import RunOptions
    from qrdoctor.core.registry import declared_option_models

    known = {f.name for f in catalog_fields()}
    unknown = sorted(set(given) - known)
    if unknown:
        raise OptionError(f"unknown option {', '.join(unknown)} (the command line's options, e.g. "
                          "probe_limit=100 for --probe-limit 100)")
    flat = {**declared_values(saved, catalog_fields()), **given}
    models = declared_option_models(option_owners(flat))
    try:
        return RunOptions.from_flat(flat, models)
    except CoreOptionError as exc:
        raise OptionError(str(exc)) from None


def check(target: str | Target, *, only: list[str] | None = None, include_phi: bool = False,
          **options: Any) -> Report:
    """Diagnose one PACS and return its report.

    ``target`` is ``AE@host:port``, a saved profile's name or a :class:`Target`. ``only`` runs
    these checks (and those they require). ``calling_ae``, ``move_ae``, ``store_port``,
    ``advertise``, ``timeout`` and ``tls``/``tls_ca``/``tls_cert``/``tls_key``/``tls_no_verify``
    set the target as the command line's flags do; every other keyword is a check option
    (``probe_limit=...``, ``patient_id=...``, ``max_associations=...``).

    Patient data is redacted as in every report qrdoctor writes, unless ``include_phi``.
    Raises :class:`TargetError` for a bad target, :class:`OptionError` for a bad option, and
    KeyError for an unknown check id in ``only``.
    """
    from qrdoctor.core.catalog import CHECKS
    from qrdoctor.core.runner import Runner
    from qrdoctor.reports.redaction import redact_report

    target_values = {k: options.pop(k) for k in (*TARGET_OPTIONS, *TLS_OPTIONS) if k in options}
    resolved, saved = _target(target, target_values)
    run_options = _run_options(saved, options)
    if only is not None:
        only = [only] if isinstance(only, str) else list(only)
        unknown = [c for c in only if c not in {e.id for e in CHECKS}]
        if unknown:
            raise KeyError(f"unknown check id {', '.join(unknown)}")
    report = Runner(resolved, only=only or None, options=run_options).run()
    return redact_report(report, include_phi=include_phi)


def fleet(inventory: str | Path, *, only: list[str] | None = None, parallel: int = 8,
          include_phi: bool = False, node_deadline: float | None = None,
          **overrides: Any) -> list[NodeRun]:
    """Check every node of an inventory (the profiles TOML ``qrdoctor fleet`` reads), at most
    ``parallel`` at once; returns each node's run in inventory order (``.node.name``,
    ``.status``, ``.report`` -- redacted unless ``include_phi`` -- or ``.error``).

    ``only`` replaces every node's selection of checks; ``overrides`` (``timeout=...``) replace
    the profiles' values. Raises ``InventoryError`` (a :class:`TargetError`) for a bad inventory.
    """
    from qrdoctor.monitor.fleet import Fleet
    from qrdoctor.monitor.inventory import load_inventory

    if isinstance(only, str):
        only = [only]
    nodes = load_inventory(inventory, only=only, **overrides)
    return Fleet(nodes, parallel=parallel, include_phi=include_phi, node_deadline=node_deadline).run()


def diff(old: Report | str | Path, new: Report | str | Path, *, latency_threshold: float = 50.0,
         force: bool = False) -> Diff:
    """What changed from ``old`` to ``new`` (reports, or paths of JSON reports -- or of two fleet
    JSONs, compared node by node); see
    :class:`qrdoctor.reports.diff.Diff` (``.changes``, ``.worse``, ``.to_json()``).

    Raises ``TargetMismatchError`` for reports of different targets unless ``force``, and
    ``DiffInputError`` for a file that is not a readable qrdoctor report."""
    from qrdoctor.reports.diff import diff as compare

    return compare(old, new, latency_threshold=latency_threshold, force=force)
