"""Re-running conclusions from recorded observations, with no network.

A run records what every check observed (``Report._observations``); the support bundle carries
it as ``observations.json`` next to ``report.json``. :func:`replay` rebuilds the run from those
two files with the installed qrdoctor: each recorded observation goes through today's
``conclude``, so a support desk sees what a newer version concludes from a customer's old
bundle. A check that was not observed in the recorded run (skipped, crashed, or not yet
replayable) keeps its recorded result, unless a requirement now blocks it.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qrdoctor import __version__
from qrdoctor.core.context import Situation
from qrdoctor.core.model import CheckResult, Report, Status, ToolInfo, summarise
from qrdoctor.core.options import RunOptions
from qrdoctor.core.registry import Check, all_checks, option_models
from qrdoctor.core.runner import BLOCKING, crash_reason, result_from_outcome
from qrdoctor.core.target import Target, TLSOptions

OBSERVATIONS_SCHEMA = "qrdoctor.observations/1"
OBSERVATIONS_MEMBER = "observations.json"


class ReplayError(ValueError):
    """The bundle or file cannot be replayed; the CLI reports it with exit code 2."""


def observations_document(report: Report) -> dict[str, Any]:
    """What ``observations.json`` holds: the run's options and each check's observation."""
    return {
        "schema": OBSERVATIONS_SCHEMA,
        "tool": {"name": "qrdoctor", "version": report.tool.version},
        "options": dict(report._options),
        "checks": {c.id: report._observations.get(c.id) for c in report.checks},
    }


def target_of(report: Report) -> Target:
    """The recorded target, rebuilt without touching the file system (TLS files may be gone)."""
    t = report.target
    tls = None
    if t.tls is not None:
        tls = object.__new__(TLSOptions)
        for name, value in (("ca_file", t.tls.get("ca_file")), ("cert_file", t.tls.get("client_certificate")),
                            ("key_file", None), ("verify", bool(t.tls.get("verify", True)))):
            object.__setattr__(tls, name, value)
    if not t.dimse:  # a DICOMweb-only run
        return Target(host=t.host, port=t.port, called_ae="", calling_ae="", move_ae="",
                      timeout=t.timeout_s or 10.0, dimse=False, dicomweb=t.dicomweb)
    return Target(host=t.host, port=t.port, called_ae=t.called_ae, calling_ae=t.calling_ae,
                  move_ae=t.move_ae, store_port=t.store_port or 0, advertise=t.advertise,
                  timeout=t.timeout_s or 10.0, tls=tls, dicomweb=t.dicomweb)


def conclude_recorded(chk: Check, observation: dict, situation: Situation,
                      recorded: CheckResult | None = None) -> CheckResult:
    """One check's result from its recorded observation, concluded by the installed code."""
    base: dict[str, Any] = {"id": chk.id, "stage": chk.stage.label, "title": chk.title,
                            "duration_s": recorded.duration_s if recorded else 0.0,
                            "transcript": list(recorded.transcript) if recorded else []}
    try:
        obs = chk.observation.model_validate(observation)
        out = chk.conclude_fn(obs, situation)  # type: ignore[misc]
        return result_from_outcome(chk, out, base)
    except ValidationError as exc:
        reason = (f"the recorded observation of {chk.id} does not fit this qrdoctor version "
                  f"({exc.error_count()} problem(s), first: {exc.errors()[0].get('msg')})")
        return CheckResult(status=Status.ERROR, reason=reason, summary="observation not replayable", **base)
    except Exception as exc:  # noqa: BLE001 - a broken conclusion is qrdoctor's error
        return CheckResult(status=Status.ERROR, reason=crash_reason(exc),
                           summary=f"qrdoctor error: {type(exc).__name__}",
                           facts={"exception": type(exc).__name__}, **base)


def replay(report: Report, document: dict[str, Any]) -> Report:
    """The report the installed qrdoctor concludes from a recorded report and its observations."""
    if document.get("schema") != OBSERVATIONS_SCHEMA:
        raise ReplayError(f"not a qrdoctor observations file (schema {document.get('schema')!r})")
    checks = {c.id: c for c in all_checks()}
    recorded = {c.id: c for c in report.checks}
    observed: dict[str, Any] = document.get("checks") or {}
    target = target_of(report)
    options = RunOptions.from_flat(
        {k: v for k, v in (document.get("options") or {}).items()
         if any(k in m.model_fields for m in option_models())},
        option_models())
    t0 = time.monotonic()
    results: dict[str, CheckResult] = {}
    for cid, old in recorded.items():
        chk = checks.get(cid)
        blocked = _blocked(chk, results) if chk is not None else None
        if blocked is not None:
            results[cid] = CheckResult(id=cid, stage=old.stage, title=old.title, status=Status.SKIPPED,
                                       blocked_by=blocked[0], reason=blocked[1], summary=blocked[1])
        elif chk is not None and observed.get(cid) is not None:
            situation = Situation(target=target, options=options, results=dict(results))
            results[cid] = conclude_recorded(chk, observed[cid], situation, old)
        else:
            results[cid] = old
    out = Report(tool=ToolInfo(version=__version__), target=report.target, started_at=report.started_at,
                 duration_s=round(time.monotonic() - t0, 3), phi_included=report.phi_included,
                 summary=summarise(list(results.values())), checks=list(results.values()))
    out._options.update(document.get("options") or {})
    out._observations.update({k: v for k, v in observed.items() if k in results})
    return out


def _blocked(chk: Check, results: dict[str, CheckResult]) -> tuple[str, str] | None:
    from qrdoctor.core.context import NOT_APPLICABLE

    for req in chk.requires:
        r = results.get(req)
        if r is None:
            continue
        not_applicable = (r.status is Status.SKIPPED and r.blocked_by is None
                          and (r.reason or "").startswith(NOT_APPLICABLE))
        if r.status in BLOCKING and not not_applicable:
            return req, f"skipped: blocked by {req} ({r.status.value})"
    return None


def load_bundle(path: str | Path) -> tuple[Report, dict[str, Any]]:
    """The recorded report and observations from a support bundle (zip)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "report.json" not in names or OBSERVATIONS_MEMBER not in names:
                missing = [n for n in ("report.json", OBSERVATIONS_MEMBER) if n not in names]
                raise ReplayError(f"{path} is not a replayable qrdoctor bundle (missing {', '.join(missing)})")
            report = Report.model_validate_json(zf.read("report.json"))
            document = json.loads(zf.read(OBSERVATIONS_MEMBER))
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        if isinstance(exc, ReplayError):
            raise
        raise ReplayError(f"cannot read {path}: {exc}") from None
    return report, document


# -- recorded fixtures for tests: one check's observation with what it needs to be concluded --


def fixture_from_report(report: Report, check_id: str) -> dict[str, Any]:
    """A small, self-contained JSON document to replay one check of a recorded run in a test:
    the target, the options, the check's observation, the earlier checks' results and the
    status and codes the live run concluded."""
    by_id = {c.id: c for c in report.checks}
    live = by_id[check_id]
    earlier = {}
    for c in report.checks:
        if c.id == check_id:
            break
        earlier[c.id] = c.model_dump(mode="json", by_alias=True, exclude={"transcript"})
    return {
        "target": report.target.model_dump(mode="json"),
        "options": dict(report._options),
        "check": check_id,
        "observation": report._observations.get(check_id),
        "earlier": earlier,
        "expect": {"status": live.status.value, "codes": sorted({f.code for f in live.findings}),
                   "facts": sorted(live.facts)},
    }


def replay_fixture(doc: dict[str, Any]) -> CheckResult:
    """Conclude one recorded fixture (see :func:`fixture_from_report`) with today's code."""
    from qrdoctor.core.model import TargetInfo

    checks = {c.id: c for c in all_checks()}
    chk = checks[doc["check"]]
    shell = Report(tool=ToolInfo(version=__version__), target=TargetInfo.model_validate(doc["target"]),
                   started_at="", duration_s=0.0, summary=summarise([]), checks=[])
    earlier = {cid: CheckResult.model_validate(r) for cid, r in (doc.get("earlier") or {}).items()}
    options = RunOptions.from_flat(doc.get("options") or {}, option_models())
    situation = Situation(target=target_of(shell), options=options, results=earlier)
    return conclude_recorded(chk, doc["observation"], situation)
