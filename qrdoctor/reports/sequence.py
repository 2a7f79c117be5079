"""The run as a sequence diagram: an inline SVG for the HTML report.

Lifelines for qrdoctor, the PACS and qrdoctor's temporary Store SCP; one arrow per association
and DIMSE exchange the report's facts show, with its status and time. Nothing is inferred
beyond the facts: a check whose facts name no exchange draws none. The step that broke is red
and drawn thick with a cross; a callback the PACS never made (a C-MOVE with no association
back) is a dashed red arrow, labelled. Dashes and crosses keep it readable in black and white.

Every text is escaped here (the report is redacted before it reaches a renderer); the SVG has
no external references and no ``//`` anywhere, like the rest of the HTML report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from qrdoctor.core.escape import for_html
from qrdoctor.core.model import CheckResult, Report, Status
from qrdoctor.reports.runinfo import MODEL_NAMES

QRDOCTOR, PACS, STORE = "qrdoctor", "pacs", "store"
OK, BROKEN, MISSING = "ok", "broken", "missing"
OK_STATUSES = ("0x0000", "0xFF00", "0xFF01")
LABEL_MAX = 66

WIDTH = 960
LANE_X = {QRDOCTOR: 200, PACS: 540, STORE: 860}
HEAD_W = 150
TOP = 64  # first arrow's y
ROW = 26  # vertical distance between arrows
SECTION = 20  # extra room above each check's first arrow


@dataclass
class Arrow:
    src: str
    dst: str
    label: str
    kind: str = OK  # ok | broken | missing


@dataclass
class Section:
    """One check's exchanges, headed by its id and absolute start time."""

    check_id: str
    status: str
    started: str
    arrows: list[Arrow] = field(default_factory=list)


def _text(value: object) -> str:
    """Escaped text for SVG, without control characters and without ``//``."""
    return str(escape(for_html(value))).replace("//", "&#47;&#47;")


def _short(label: str) -> str:
    label = " ".join(label.split())
    return label if len(label) <= LABEL_MAX else label[: LABEL_MAX - 1] + "…"


def _ms(value: Any) -> str:
    return f" in {value:g} ms" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _matches(n: Any) -> str:
    return f"{n} match" if n == 1 else f"{n} matches"


def _status_kind(status: Any) -> str:
    return OK if status in OK_STATUSES else BROKEN


# ---- one builder per check: the exchanges its facts show ---------------------------------------

def _tcp(c: CheckResult) -> list[Arrow]:
    f = c.facts
    result = f.get("result")
    if not result:
        return []
    kind = OK if result == "connected" else BROKEN
    return [Arrow(QRDOCTOR, PACS, f"TCP connect: {result}{_ms(f.get('connect_ms'))}", kind)]


def _tls(c: CheckResult) -> list[Arrow]:
    if c.status is Status.SKIPPED or not c.facts:
        return []
    kind = OK if c.status in (Status.PASS, Status.WARN) else BROKEN
    version = c.facts.get("version") or c.facts.get("tls_version") or c.status.value
    return [Arrow(QRDOCTOR, PACS, f"TLS handshake: {version}", kind)]


def _association(result: str | None, what: str = "", ms: Any = None) -> list[Arrow]:
    """An A-ASSOCIATE-RQ and what came back (from a probe's ``probe_result``)."""
    if not result:
        return []
    answer = {"accepted": "A-ASSOCIATE-AC", "rejected": "A-ASSOCIATE-RJ", "aborted": "A-ABORT"}.get(
        result, f"no association ({result})")
    kind = OK if result == "accepted" else BROKEN
    return [Arrow(QRDOCTOR, PACS, f"A-ASSOCIATE-RQ{what}"),
            Arrow(PACS, QRDOCTOR, f"{answer}{_ms(ms)}", kind)]


def _echo(c: CheckResult) -> list[Arrow]:
    f = c.facts
    arrows = _association(f.get("probe_result"), "", f.get("association_ms"))
    if arrows and f.get("peer_implementation"):
        arrows[-1].label += f" ({f['peer_implementation']})"
    status = f.get("echo_status")
    if status:
        arrows += [Arrow(QRDOCTOR, PACS, "C-ECHO-RQ"),
                   Arrow(PACS, QRDOCTOR, f"C-ECHO-RSP {status}{_ms(f.get('rtt_ms'))}", _status_kind(status))]
    return arrows


def _ae_titles(c: CheckResult) -> list[Arrow]:
    arrows: list[Arrow] = []
    for probe in (c.facts.get("probes") or {}).values():
        if not isinstance(probe, dict):
            continue
        if probe.get("called_ae"):
            what = f" called {probe['called_ae']}"
        elif probe.get("calling_ae"):
            what = f" calling {probe['calling_ae']}"
        else:
            what = ""
        pair = _association(probe.get("probe_result"), what, probe.get("elapsed_ms"))
        for arrow in pair:
            arrow.kind = OK  # a rejection here is the answer the check hoped for, not a break
        arrows += pair
    return arrows


def _models(c: CheckResult) -> list[Arrow]:
    contexts = [x for x in c.facts.get("contexts") or [] if isinstance(x, dict)]
    if not contexts:
        return []
    accepted = sum(1 for x in contexts if x.get("accepted"))
    kind = OK if accepted else BROKEN
    return [Arrow(QRDOCTOR, PACS, f"A-ASSOCIATE-RQ: {len(contexts)} presentation contexts"),
            Arrow(PACS, QRDOCTOR, f"A-ASSOCIATE-AC: {accepted} of {len(contexts)} accepted", kind)]


def _find_pair(request: str, status: Any, matches: Any, ms: Any = None) -> list[Arrow]:
    if not status:
        return [Arrow(QRDOCTOR, PACS, request), Arrow(PACS, QRDOCTOR, "no C-FIND-RSP", BROKEN)]
    counted = f", {_matches(matches)}" if isinstance(matches, int) else ""
    return [Arrow(QRDOCTOR, PACS, request),
            Arrow(PACS, QRDOCTOR, f"C-FIND-RSP {status}{counted}{_ms(ms)}", _status_kind(status))]


def _levels(c: CheckResult) -> list[Arrow]:
    arrows: list[Arrow] = []
    for lv in c.facts.get("levels") or []:
        if isinstance(lv, dict):
            model = MODEL_NAMES.get(lv.get("model"), lv.get("model") or "")
            arrows += _find_pair(f"C-FIND-RQ {model} {lv.get('level', '')}", lv.get("status"),
                                 lv.get("matches"), lv.get("ms"))
    return arrows


def _match_limit(c: CheckResult) -> list[Arrow]:
    f = c.facts
    arrows: list[Arrow] = []
    universal = f.get("universal_query")
    if isinstance(universal, dict):
        arrows += _find_pair(f"C-FIND-RQ {f.get('level') or ''} (all)", universal.get("status"),
                             universal.get("matches"), universal.get("elapsed_ms"))
    proof = f.get("proof") if isinstance(f.get("proof"), dict) else {}
    for part in proof.get("parts") or []:
        if isinstance(part, dict):
            arrows += [Arrow(QRDOCTOR, PACS, f"C-FIND-RQ {part.get('query', '')}"),
                       Arrow(PACS, QRDOCTOR, f"C-FIND-RSP: {_matches(part.get('matches'))}")]
    return arrows


def _probe_statuses(probes: Any) -> list[Any]:
    items = probes.values() if isinstance(probes, dict) else probes if isinstance(probes, list) else []
    return [p.get("status") for p in items if isinstance(p, dict) and "status" in p]


def _matching(c: CheckResult) -> list[Arrow]:
    """Matching probes: one C-FIND each; drawn as one exchange with the count of each status."""
    statuses = _probe_statuses(c.facts.get("probes"))
    if not statuses:
        return []
    counts: dict[str, int] = {}
    for s in statuses:
        counts[str(s) if s else "no answer"] = counts.get(str(s) if s else "no answer", 0) + 1
    answered = ", ".join(f"{n} × {s}" for s, n in counts.items())
    kind = OK if all(s in OK_STATUSES for s in statuses) else BROKEN
    return [Arrow(QRDOCTOR, PACS, f"{len(statuses)} × C-FIND-RQ (probe queries)"),
            Arrow(PACS, QRDOCTOR, f"C-FIND-RSP: {answered}", kind)]


def _counts(f: dict[str, Any]) -> str:
    parts = [f"{k} {f[k]}" for k in ("completed", "failed", "warning") if isinstance(f.get(k), int)]
    return f" ({', '.join(parts)})" if parts else ""


def _inbound(conn: dict[str, Any]) -> list[Arrow]:
    """One association the PACS opened to the temporary Store SCP, and what it carried."""
    who = f" from {conn['calling_ae']}" if conn.get("calling_ae") else ""
    result = conn.get("result") or "opened"
    arrows = [Arrow(PACS, STORE, f"A-ASSOCIATE-RQ{who}: {result}", OK if result == "accepted" else BROKEN)]
    objects = conn.get("objects")
    if isinstance(objects, int) and objects:
        arrows.append(Arrow(PACS, STORE, f"{objects} × C-STORE-RQ"))
    if conn.get("ended"):
        ended = conn["ended"]
        arrows.append(Arrow(PACS, STORE, f"association {ended}", OK if ended == "released" else BROKEN))
    return arrows


def _pending(f: dict[str, Any], response: str) -> list[Arrow]:
    pending = f.get("pending_responses")
    if not isinstance(pending, int) or isinstance(pending, bool) or pending <= 0:
        return []
    return [Arrow(PACS, QRDOCTOR, f"{pending} × {response} Pending")]


def _move(c: CheckResult) -> list[Arrow]:
    f = c.facts
    if not f or ("status" not in f and "inbound" not in f):
        return []
    dest = f" to {f['move_ae']}" if f.get("move_ae") else ""
    arrows = [Arrow(QRDOCTOR, PACS, f"C-MOVE-RQ{dest}")]
    inbound = [x for x in f.get("inbound") or [] if isinstance(x, dict)]
    for conn in inbound:
        arrows += _inbound(conn)
    if not inbound and f.get("inbound_connections") == 0:
        store = f.get("store") if isinstance(f.get("store"), dict) else {}
        port = store.get("port") or c.facts.get("store_port")
        where = f" on port {port}" if port else ""
        arrows.append(Arrow(PACS, STORE, f"never called back: no association{where}", MISSING))
    arrows += _pending(f, "C-MOVE-RSP")
    status = f.get("status")
    if status:
        arrows.append(Arrow(PACS, QRDOCTOR, f"C-MOVE-RSP {status}{_counts(f)}{_ms(f.get('duration_ms'))}",
                            _status_kind(status)))
    else:
        arrows.append(Arrow(PACS, QRDOCTOR, "no final C-MOVE-RSP", BROKEN))
    return arrows


def _get(c: CheckResult) -> list[Arrow]:
    f = c.facts
    if not f or not f.get("status") and not f.get("received"):
        return []
    arrows = [Arrow(QRDOCTOR, PACS, "C-GET-RQ")]
    received = f.get("received")
    if isinstance(received, int) and received:
        arrows.append(Arrow(PACS, QRDOCTOR, f"{received} × C-STORE-RQ (same association)"))
    expected = f.get("expected")
    if isinstance(expected, int) and isinstance(received, int) and received < expected:
        arrows.append(Arrow(PACS, QRDOCTOR, f"{expected - received} expected C-STORE-RQ never came", MISSING))
    arrows += _pending(f, "C-GET-RSP")
    status = f.get("status")
    final = f"C-GET-RSP {status}{_counts(f)}{_ms(f.get('duration_ms'))}" if status else "no final C-GET-RSP"
    arrows.append(Arrow(PACS, QRDOCTOR, final, _status_kind(status)))
    return arrows


BUILDERS: dict[str, Callable[[CheckResult], list[Arrow]]] = {
    "network.tcp": _tcp, "network.tls": _tls, "association.echo": _echo,
    "association.ae_titles": _ae_titles, "association.models": _models, "find.levels": _levels,
    "find.match_limit": _match_limit, "match.wildcards": _matching, "match.ranges": _matching,
    "match.lists": _matching, "retrieve.move": _move, "retrieve.get": _get,
}


def _clock(iso: str | None) -> str:
    """HH:MM:SS.mmm of an ISO time (UTC), or empty."""
    if not iso or "T" not in iso:
        return ""
    return iso.split("T", 1)[1][:12]


def sections(report: Report) -> list[Section]:
    """Each check's exchanges, in run order; a failed check's last step is marked as broken
    when no arrow of its own says where it broke."""
    out: list[Section] = []
    for c in report.checks:
        builder = BUILDERS.get(c.id)
        arrows = builder(c) if builder is not None else []
        if not arrows:
            continue
        if c.status in (Status.FAIL, Status.ERROR) and all(a.kind == OK for a in arrows):
            arrows[-1].kind = BROKEN
        out.append(Section(c.id, c.status.value, _clock(c.started_at), arrows))
    return out


# ---- drawing -----------------------------------------------------------------------------------

def _head(x: int, y: int, leftwards: bool, kind: str) -> str:
    """An arrowhead as a polygon (no markers: nothing in the file is a url() reference)."""
    back = x + 9 if leftwards else x - 9
    return f'<polygon class="head {kind}" points="{x},{y} {back},{y - 4} {back},{y + 4}"/>'


def _arrow_svg(a: Arrow, y: int) -> list[str]:
    x1, x2 = LANE_X[a.src], LANE_X[a.dst]
    mid = (x1 + x2) // 2
    label = _short(a.label)
    if a.kind == BROKEN:
        label = "✘ " + label
    dash = ' stroke-dasharray="7 5"' if a.kind == MISSING else ""
    return [
        f'<line class="msg {a.kind}" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"{dash}/>',
        _head(x2, y, x2 < x1, a.kind),
        f'<text class="label {a.kind}" x="{mid}" y="{y - 5}" text-anchor="middle">{_text(label)}</text>',
    ]


def _section_svg(s: Section, y: int) -> list[str]:
    when = f" {s.started} UTC" if s.started else ""
    return [f'<text class="section {s.status}" x="8" y="{y + 4}">{_text(s.check_id)}</text>',
            f'<text class="when" x="8" y="{y + 17}">{_text(when.strip())}</text>',
            f'<line class="divider" x1="8" y1="{y - 12}" x2="{WIDTH - 8}" y2="{y - 12}"/>']


def _height(secs: list[Section]) -> int:
    return TOP + sum(SECTION + ROW * len(s.arrows) for s in secs) + 16


def _lifelines(height: int, store_used: bool, pacs_name: str) -> list[str]:
    names = {QRDOCTOR: "qrdoctor", PACS: f"PACS {pacs_name}", STORE: "temporary Store SCP"}
    out: list[str] = []
    for lane, x in LANE_X.items():
        if lane == STORE and not store_used:
            continue
        out += [f'<rect class="head" x="{x - HEAD_W // 2}" y="8" width="{HEAD_W}" height="26" rx="4"/>',
                f'<text class="head" x="{x}" y="26" text-anchor="middle">{_text(names[lane])}</text>',
                f'<line class="lifeline" x1="{x}" y1="34" x2="{x}" y2="{height - 8}"/>']
    return out


STYLE = "".join(f"svg.sequence {rule}" for rule in (
    ".lifeline{stroke:#777;stroke-width:1}",
    "rect.head{fill:#fff;stroke:#000;stroke-width:1}",
    "text{font:10.5px system-ui,sans-serif;fill:#000}",
    "text.head{font-weight:600}",
    "text.section{font-family:ui-monospace,monospace;font-weight:600}",
    "text.when{fill:#444;font-size:10px}",
    ".divider{stroke:#ccc;stroke-width:1}",
    ".msg{stroke:#000;stroke-width:1.2}",
    ".msg.broken{stroke:#c00;stroke-width:2.5}",
    ".msg.missing{stroke:#c00;stroke-width:2}",
    "polygon.head{fill:#000}",
    "polygon.head.broken,svg.sequence polygon.head.missing{fill:#c00}",
    "text.broken,svg.sequence text.missing{fill:#c00;font-weight:700}",
    "text.section.fail,svg.sequence text.section.error{fill:#c00}",
))


def sequence_svg(report: Report) -> Markup:
    """The inline SVG (empty when the report shows no exchange at all)."""
    secs = sections(report)
    if not secs:
        return Markup("")
    height = _height(secs)
    store_used = any(STORE in (a.src, a.dst) for s in secs for a in s.arrows)
    parts = [
        f'<svg class="sequence" role="img" aria-labelledby="qrd-seq-title" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}">',
        '<title id="qrd-seq-title">The run as a sequence diagram: every association and DIMSE '
        'exchange the checks recorded</title>',
        f"<style>{STYLE}</style>",
        *_lifelines(height, store_used, report.target.called_ae),
    ]
    y = TOP
    for s in secs:
        y += SECTION
        parts += _section_svg(s, y - ROW // 2)
        for a in s.arrows:
            parts += _arrow_svg(a, y)
            y += ROW
    parts.append("</svg>")
    return Markup("\n".join(parts))
