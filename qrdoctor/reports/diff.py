"""What changed between two reports of the same target (``qrdoctor diff OLD.json NEW.json``).

Compared: each check's status, the finding codes that appeared or disappeared (or changed
severity), the facts that describe how the PACS behaves -- its match limit, how it matches
person names, the Q/R models it offers, the retrieve's outcome and transfer syntaxes -- read
through the checks' declared fact types (:func:`~qrdoctor.core.registry.typed_facts`), and the
latencies that moved by more than a threshold. Each change says whether it is worse, better or
neither; :attr:`Diff.worse` decides the command's exit status.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from qrdoctor.console import MARKS_UTF8
from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import CheckResult, Report, Severity, Status
from qrdoctor.core.registry import Facts, typed_facts

DEFAULT_LATENCY_THRESHOLD = 50.0  # percent
LATENCY_FLOOR_MS = 10.0  # a latency must also move by this much: sub-millisecond noise is no change

# How bad a status is; a skipped check was not tested, so a change to or from it is neither.
_RANK = {Status.PASS: 0, Status.WARN: 1, Status.ERROR: 2, Status.FAIL: 3}
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.ERROR: 2, Severity.FAIL: 3}


class DiffInputError(ValueError):
    """A report that cannot be read (missing, not JSON, not a qrdoctor report)."""


class TargetMismatchError(ValueError):
    """The two reports are of different targets."""


class Change(BaseModel):
    """One difference between the two reports."""

    check: str = Field(description="The check it concerns.")
    kind: str = Field(description="status | finding | fact | latency | check")
    what: str = Field(description="What changed, in words (a finding code, a fact's name).")
    old: Any = None
    new: Any = None
    verdict: str = Field(description="worse | better | changed")
    text: str = Field(description="One line for people.")


class RunRef(BaseModel):
    target: str
    started_at: str
    tool_version: str


class Diff(BaseModel):
    """What changed from ``old`` to ``new``."""

    schema_: str = Field(default="qrdoctor.diff/1", alias="schema")
    old: RunRef
    new: RunRef
    latency_threshold_pct: float
    changes: list[Change] = []

    model_config = {"populate_by_name": True}

    @property
    def worse(self) -> bool:
        return any(c.verdict == "worse" for c in self.changes)

    @property
    def exit_code(self) -> int:
        """1 when something got worse, else 0 (as ``qrdoctor diff`` exits)."""
        return 1 if self.worse else 0

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


# -- reading ---------------------------------------------------------------------------------


MAX_INPUT_BYTES = 64 * 1024 * 1024  # a report with a long transcript is a few MB


def _read_text(path: str | Path) -> str:
    """A file the user was sent, read only when it is a regular file of a bounded size (not a
    FIFO or a device, which would block or never end)."""
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise DiffInputError(f"cannot read {path}: not a regular file")
        if st.st_size > MAX_INPUT_BYTES:
            raise DiffInputError(f"cannot read {path}: too large ({st.st_size} bytes; qrdoctor reads up to "
                                 f"{MAX_INPUT_BYTES // (1024 * 1024)} MB)")
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DiffInputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _json(text: str, path: str | Path) -> Any:
    """JSON read from untrusted text: nesting too deep for the parser and integers too long to
    convert are errors of the file like any syntax error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DiffInputError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise DiffInputError(f"{path} is not a qrdoctor report (JSON nested too deeply)") from None
    except ValueError:
        raise DiffInputError(f"{path} is not a qrdoctor report (a number too long to read)") from None


def load_report(path: str | Path) -> Report:
    """A report from a JSON file (or the JSON embedded in an HTML report)."""
    text = _read_text(path)
    if text.lstrip().startswith("<"):
        from qrdoctor.reports.html import EMBED_ID

        start_tag = f'<script type="application/json" id="{EMBED_ID}">'
        start = text.find(start_tag)
        end = text.find("</script>", start + len(start_tag)) if start >= 0 else -1
        if end < 0:
            raise DiffInputError(f"{path} is an HTML file without an embedded qrdoctor report")
        data: Any = _json(text[start + len(start_tag):end], path)
    else:
        data = _json(text, path)
    return report_from(data, str(path))


FLEET_SCHEMA_PREFIX = "qrdoctor.fleet/"


def load_document(path: str | Path) -> Report | FleetDocument:
    """A report, or a fleet JSON (``qrdoctor fleet --json``) with the folder its node reports
    are relative to."""
    text = _read_text(path)
    if not text.lstrip().startswith("<"):
        data = _json(text, path)
        if isinstance(data, dict) and str(data.get("schema", "")).startswith(FLEET_SCHEMA_PREFIX):
            nodes = data.get("nodes")
            if not isinstance(nodes, list) or not all(isinstance(n, dict) and n.get("name") for n in nodes):
                raise DiffInputError(f"{path} is not a valid fleet report (its nodes have no names)")
            return FleetDocument(data=data, base=Path(path).resolve().parent, name=str(path))
    return load_report(path)


class FleetDocument:
    """A fleet JSON and the folder its node reports' paths are relative to."""

    def __init__(self, data: dict[str, Any], base: Path, name: str) -> None:
        self.data, self.base, self.name = data, base, name

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        return {str(n["name"]): n for n in self.data["nodes"]}

    def node_report(self, node: dict[str, Any]) -> Report | None:
        """The node's JSON report, when the fleet run wrote one and it is still there."""
        rel = (node.get("reports") or {}).get("json") if isinstance(node.get("reports"), dict) else None
        if not rel:
            return None
        try:
            return load_report(self.base / str(rel))
        except DiffInputError:
            return None


def report_from(data: Any, name: str = "the report") -> Report:
    if isinstance(data, Report):
        return data
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("qrdoctor.report/"):
        raise DiffInputError(f"{name} is not a qrdoctor report (no \"schema\": \"qrdoctor.report/1\")")
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise DiffInputError(f"{name} is not a valid qrdoctor report ({where}: {first.get('msg')})") from None


def target_label(report: Report) -> str:
    t = report.target
    host = f"[{t.host}]" if ":" in t.host else t.host
    return f"{t.called_ae}@{host}:{t.port}"


def same_target(a: Report, b: Report) -> bool:
    ta, tb = a.target, b.target
    return (ta.host.lower(), ta.port, ta.called_ae.strip()) == (tb.host.lower(), tb.port, tb.called_ae.strip())


# -- comparing -------------------------------------------------------------------------------


def _facts(c: CheckResult | None) -> Facts | None:
    if c is None or c.status is Status.SKIPPED:
        return None
    try:
        return typed_facts(c.id, c.facts)
    except ValidationError:
        return Facts.model_validate(c.facts or {})


def _get(facts: Facts | None, name: str) -> Any:
    if facts is None:
        return None
    value = getattr(facts, name, None)
    if value is None and facts.model_extra:
        value = facts.model_extra.get(name)
    return value


def _has(facts: Facts | None, name: str) -> bool:
    return facts is not None and (name in facts.model_fields_set or name in (facts.model_extra or {}))


class _Collector:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.changes: list[Change] = []

    def add(self, check: str, kind: str, what: str, old: Any, new: Any, verdict: str, text: str) -> None:
        self.changes.append(Change(check=check, kind=kind, what=what, old=old, new=new, verdict=verdict,
                                   text=text))

    def fact(self, check: str, what: str, old: Any, new: Any, verdict: str, shown=None) -> None:
        show = shown or (lambda v: "none" if v is None else str(v))
        if old != new:
            self.add(check, "fact", what, old, new, verdict, f"{what}: {show(old)} → {show(new)}")

    def latency(self, check: str, what: str, old: Any, new: Any) -> None:
        if not isinstance(old, int | float) or not isinstance(new, int | float) or old <= 0:
            return
        pct = (new - old) / old * 100.0
        if abs(pct) <= self.threshold or abs(new - old) < LATENCY_FLOOR_MS:
            return
        self.add(check, "latency", what, old, new, "worse" if new > old else "better",
                 f"{what}: {old:g} ms → {new:g} ms ({pct:+.0f}%)")


def _status(col: _Collector, old: CheckResult, new: CheckResult) -> None:
    if old.status == new.status:
        return
    a, b = _RANK.get(old.status), _RANK.get(new.status)
    verdict = "changed" if a is None or b is None else ("worse" if b > a else "better")
    col.add(new.id, "status", "status", old.status.value, new.status.value, verdict,
            f"{MARKS_UTF8[old.status]} {old.status.value} → {MARKS_UTF8[new.status]} {new.status.value}")


def _findings(col: _Collector, old: CheckResult | None, new: CheckResult | None, check: str) -> None:
    was = {f.code: f for f in (old.findings if old else [])}
    now = {f.code: f for f in (new.findings if new else [])}
    for code in sorted(now.keys() - was.keys()):
        f = now[code]
        col.add(check, "finding", code, None, f.severity.value,
                "worse" if f.severity is not Severity.INFO else "changed",
                f"new finding {code} ({f.severity.value}): {f.summary}")
    for code in sorted(was.keys() - now.keys()):
        f = was[code]
        col.add(check, "finding", code, f.severity.value, None,
                "better" if f.severity is not Severity.INFO else "changed",
                f"finding {code} ({f.severity.value}) is gone")
    for code in sorted(was.keys() & now.keys()):
        a, b = was[code].severity, now[code].severity
        if a != b:
            col.add(check, "finding", code, a.value, b.value,
                    "worse" if _SEVERITY_RANK[b] > _SEVERITY_RANK[a] else "better",
                    f"finding {code}: {a.value} → {b.value}")


def _limit_text(v: Any) -> str:
    return "no cap found" if v is None else f"capped at {v} matches"


def _match_limit(col: _Collector, check: str, a: Facts | None, b: Facts | None) -> None:
    if not (_has(a, "limit") and _has(b, "limit")):
        return
    old, new = _get(a, "limit"), _get(b, "limit")
    if old == new:
        return
    verdict = ("worse" if old is None or (new is not None and new < old) else "better")
    col.fact(check, "match limit", old, new, verdict, _limit_text)


_WILDCARD_FLAGS = (("question_mark", "'?' wildcard"), ("leading_wildcard", "leading '*'"),
                   ("inner_wildcard", "inner '*'"), ("exact_match", "exact name match"),
                   ("non_ascii", "non-ASCII names"))


def _wildcards(col: _Collector, check: str, a: Facts | None, b: Facts | None) -> None:
    if a is None or b is None:
        return
    old, new = _get(a, "case_sensitive"), _get(b, "case_sensitive")
    if old is not None and new is not None and old != new:
        col.fact(check, "PN matching", old, new, "worse" if new else "better",
                 lambda v: "case sensitive" if v else "case insensitive")
    old, new = _get(a, "scope"), _get(b, "scope")
    if old is not None and new is not None and old != new:
        verdict = "better" if new == "whole_value" else "worse" if old == "whole_value" else "changed"
        col.fact(check, "PN wildcard scope", old, new, verdict)
    for name, label in _WILDCARD_FLAGS:
        old, new = _get(a, name), _get(b, name)
        if old is not None and new is not None and old != new:
            col.fact(check, label, old, new, "worse" if old and not new else "better",
                     lambda v: "works" if v else "does not work")


def _models(col: _Collector, check: str, a: Facts | None, b: Facts | None) -> None:
    old, new = _get(a, "models") or {}, _get(b, "models") or {}
    if a is None or b is None:
        return
    for model in sorted(old.keys() & new.keys()):
        for op in ("find", "move", "get"):
            x, y = (old[model] or {}).get(op), (new[model] or {}).get(op)
            if x is not None and y is not None and x != y:
                col.fact(check, f"{model.replace('_', ' ')} {op.upper()}", x, y, "worse" if x else "better",
                         lambda v: "offered" if v else "not offered")
    col.fact(check, "transfer syntaxes", sorted(_get(a, "transfer_syntaxes") or []),
             sorted(_get(b, "transfer_syntaxes") or []), "changed", lambda v: ", ".join(v) or "none")


def _lists_ranges(col: _Collector, check: str, a: Facts | None, b: Facts | None) -> None:
    if a is None or b is None:
        return
    names = (("ui_list", "UID list"), ("cs_list", "CS list")) if check == "match.lists" else (
        ("single_value", "single date"), ("closed_range", "closed date range"),
        ("open_end", "open-ended range"), ("open_start", "open-start range"), ("time_range", "time range"))
    for name, label in names:
        old, new = _get(a, name), _get(b, name)
        if old is None or new is None or old == new:
            continue
        good = ("supported", True)
        verdict = "worse" if old in good else "better" if new in good else "changed"
        col.fact(check, label, old, new, verdict)


def _retrieve(col: _Collector, check: str, a: Facts | None, b: Facts | None) -> None:
    if a is None or b is None:
        return
    old, new = _get(a, "status"), _get(b, "status")
    if old is not None and new is not None and old != new:
        verdict = "better" if new == "0x0000" else "worse" if old == "0x0000" else "changed"
        col.fact(check, "retrieve status", old, new, verdict)
    for name, bad_when in (("completed", "less"), ("failed", "more"), ("received", "less")):
        x, y = _get(a, name), _get(b, name)
        if isinstance(x, int) and isinstance(y, int) and x != y:
            worse = y < x if bad_when == "less" else y > x
            col.fact(check, f"objects {name}", x, y, "worse" if worse else "better")
    col.fact(check, "transfer syntaxes received", sorted(_get(a, "transfer_syntaxes") or {}),
             sorted(_get(b, "transfer_syntaxes") or {}), "changed", lambda v: ", ".join(v) or "none")


# Latencies worth comparing: (check, fact or dotted path, label).
LATENCIES = (
    ("network.tcp", "connect_ms", "TCP connect"),
    ("association.echo", "association_ms", "association set-up"),
    ("association.echo", "rtt_ms", "C-ECHO round trip"),
    ("find.match_limit", "universal_query.elapsed_ms", "universal C-FIND"),
    ("retrieve.move", "time_to_first_object_ms", "C-MOVE time to first object"),
    ("retrieve.move", "duration_ms", "C-MOVE duration"),
    ("retrieve.get", "time_to_first_object_ms", "C-GET time to first object"),
    ("retrieve.get", "duration_ms", "C-GET duration"),
)


def _path(facts: Facts | None, path: str) -> Any:
    head, _, rest = path.partition(".")
    value = _get(facts, head)
    for part in rest.split(".") if rest else ():
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


FACT_RULES = {
    "find.match_limit": _match_limit,
    "match.wildcards": _wildcards,
    "association.models": _models,
    "match.lists": _lists_ranges,
    "match.ranges": _lists_ranges,
    "retrieve.move": _retrieve,
    "retrieve.get": _retrieve,
}


def compare(old: Report, new: Report, *, latency_threshold: float = DEFAULT_LATENCY_THRESHOLD,
            force: bool = False) -> Diff:
    """What changed from ``old`` to ``new``; raises :class:`TargetMismatchError` for reports of
    different targets unless ``force``."""
    if not force and not same_target(old, new):
        raise TargetMismatchError(f"the reports are of different targets ({target_label(old)} and "
                                  f"{target_label(new)}); compare them anyway with --force")
    col = _Collector(latency_threshold)
    was = {c.id: c for c in old.checks}
    now = {c.id: c for c in new.checks}
    order = [c.id for c in new.checks] + [cid for cid in was if cid not in now]
    for cid in order:
        a, b = was.get(cid), now.get(cid)
        if a is None or b is None:
            present = b if a is None else a
            col.add(cid, "check", "check", None if a is None else a.status.value,
                    None if b is None else b.status.value, "changed",
                    f"only in the {'new' if a is None else 'old'} report ({present.status.value})")
            continue
        _status(col, a, b)
        _findings(col, a, b, cid)
        fa, fb = _facts(a), _facts(b)
        rule = FACT_RULES.get(cid)
        if rule is not None:
            try:
                rule(col, cid, fa, fb)
            except (TypeError, AttributeError, ValueError, KeyError) as exc:
                # facts that failed their check's types were read untyped: a report that was
                # edited, or damaged, is refused rather than compared half-way
                raise DiffInputError(f"the facts of {cid[:80]} in one report are not of the types qrdoctor "
                                     f"writes ({type(exc).__name__}); the reports cannot be compared") from None
        for check, path, label in LATENCIES:
            if check == cid:
                col.latency(cid, label, _path(fa, path), _path(fb, path))
    ref = lambda r: RunRef(target=target_label(r), started_at=r.started_at, tool_version=r.tool.version)  # noqa: E731
    return Diff(old=ref(old), new=ref(new), latency_threshold_pct=latency_threshold, changes=col.changes)


# -- rendering -------------------------------------------------------------------------------

_VERDICT_MARK = {"worse": "✘", "better": "✔", "changed": "~"}


def render_text(d: Diff) -> str:
    lines = [for_terminal(f"qrdoctor diff: {d.old.target}, {d.old.started_at} → "
                          + (f"{d.new.target}, " if d.new.target != d.old.target else "")
                          + d.new.started_at)]
    if not d.changes:
        lines.append("No changes.")
        return "\n".join(lines) + "\n"
    width = max(len(c.check) for c in d.changes) + 1
    for c in d.changes:
        lines.append(for_terminal(f"  {_VERDICT_MARK[c.verdict]} {c.check:<{width}} {c.text}"))
    lines.append(_tally(d))
    return "\n".join(lines) + "\n"


def _tally(d: Diff) -> str:
    n = {v: sum(1 for c in d.changes if c.verdict == v) for v in ("worse", "better", "changed")}
    head = "Something got worse" if n["worse"] else "Nothing got worse"
    return f"{head}: {n['worse']} worse, {n['better']} better, {n['changed']} other changes."


def render_markdown(d: Diff) -> str:
    from qrdoctor.reports.markdown import cell, code, prose

    lines = [f"# qrdoctor diff: {prose(d.old.target)}", "",
             f"From the run of {prose(d.old.started_at)} to the run of {prose(d.new.started_at)}"
             + (f" ({prose(d.new.target)})" if d.new.target != d.old.target else "") + ".", ""]
    if not d.changes:
        return "\n".join([*lines, "No changes."]) + "\n"
    lines += ["| | Check | Change |", "|---|---|---|"]
    lines += [f"| {_VERDICT_MARK[c.verdict]} {c.verdict} | {cell(code(c.check))} | {cell(prose(c.text))} |"
              for c in d.changes]
    lines += ["", f"**{_tally(d)}**"]
    return "\n".join(lines) + "\n"


_FLEET_RANK = {"pass": 0, "warn": 1, "error": 2, "fail": 3}


def compare_fleets(old: FleetDocument, new: FleetDocument, *,
                   latency_threshold: float = DEFAULT_LATENCY_THRESHOLD) -> Diff:
    """What changed node by node between two fleet runs: each node's status and first problem,
    its echo round trip, and -- where both runs' node reports are still next to their fleet
    JSON -- every change of :func:`compare` between them, under ``NODE: check``."""
    col = _Collector(latency_threshold)
    was, now = old.nodes, new.nodes
    for name in [*now, *(n for n in was if n not in now)]:
        a, b = was.get(name), now.get(name)
        if a is None or b is None:
            present = b if a is None else a
            col.add(name, "node", "node", None if a is None else a.get("status"),
                    None if b is None else b.get("status"), "changed",
                    f"only in the {'new' if a is None else 'old'} fleet run ({present.get('status')})")
            continue
        x, y = a.get("status"), b.get("status")
        if x != y:
            rx, ry = _FLEET_RANK.get(str(x)), _FLEET_RANK.get(str(y))
            verdict = "changed" if rx is None or ry is None else "worse" if ry > rx else "better"
            col.add(name, "status", "status", x, y, verdict, f"node {x} → {y}")
        ra, rb = old.node_report(a), new.node_report(b)
        if ra is not None and rb is not None:
            for c in compare(ra, rb, latency_threshold=latency_threshold, force=True).changes:
                col.changes.append(c.model_copy(update={"check": f"{name}: {c.check}"}))
            continue
        pa, pb = a.get("first_problem") or {}, b.get("first_problem") or {}
        if isinstance(pa, dict) and isinstance(pb, dict) and pa.get("code") != pb.get("code"):
            verdict = "better" if not pb.get("code") else "worse" if not pa.get("code") else "changed"
            col.add(name, "finding", "first problem", pa.get("code"), pb.get("code"), verdict,
                    f"first problem: {pa.get('code') or 'none'} → {pb.get('code') or 'none'}")
        col.latency(name, "C-ECHO round trip", a.get("echo_rtt_ms"), b.get("echo_rtt_ms"))

    def ref(doc: FleetDocument) -> RunRef:
        tool = doc.data.get("tool")
        return RunRef(target=f"fleet {doc.data.get('inventory') or doc.name}",
                      started_at=str(doc.data.get("started_at", "")),
                      tool_version=str(tool.get("version", "") if isinstance(tool, dict) else ""))

    return Diff(old=ref(old), new=ref(new), latency_threshold_pct=latency_threshold, changes=col.changes)


def diff(old: Report | str | Path | dict, new: Report | str | Path | dict, *,
         latency_threshold: float = DEFAULT_LATENCY_THRESHOLD, force: bool = False) -> Diff:
    """Compare two reports given as :class:`Report` objects, JSON file paths or parsed JSON;
    two paths may also name fleet JSONs (``qrdoctor fleet --json``), compared node by node."""
    def read(x: Report | str | Path | dict, name: str) -> Report | FleetDocument:
        if isinstance(x, str | Path):
            return load_document(x)
        return report_from(x, name)

    a, b = read(old, "the old report"), read(new, "the new report")
    if isinstance(a, FleetDocument) and isinstance(b, FleetDocument):
        return compare_fleets(a, b, latency_threshold=latency_threshold)
    if isinstance(a, FleetDocument) or isinstance(b, FleetDocument):
        raise DiffInputError("one file is a fleet report and the other a single node's report; "
                             "compare two of a kind")
    return compare(a, b, latency_threshold=latency_threshold, force=force)
