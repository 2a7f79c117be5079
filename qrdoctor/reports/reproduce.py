"""Reproduction commands: each check's DICOM exchange as DCMTK command lines.

A PACS administrator can run these from their own side to see what qrdoctor saw, with the run's
real values filled in (AE titles, address, port, the model and level, the UIDs of the retrieved
series). They are built from the (already redacted) report alone, so a report read back from
JSON gives the same commands, and patient data that the report leaves out stays out: where a
check matched on a patient's name or on values the report does not record, the command keeps a
placeholder in angle brackets and a note says what to put there.

The option names are DCMTK 3.6.7's (``echoscu``, ``findscu``, ``movescu``, ``getscu``,
``storescp``): ``-aet``/``-aec``/``-aem`` for AE titles, ``-S``/``-P``/``-O`` for the
information model, ``-k`` for keys, ``+P`` for movescu's own receiving port, and for TLS
``+tls KEY CERT`` (or ``+tla`` without a client certificate), ``+cf FILE``/``+cd DIR`` for the
certificates to trust and ``-ic`` not to verify the peer. movescu and getscu of DCMTK 3.6.7 have
no TLS options; for a TLS target their commands are left out and a note says so.
"""

from __future__ import annotations

import math
import shlex
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import CheckResult, Report, TargetInfo

# DCMTK's -S/-P/-O by qrdoctor's model names.
MODEL_FLAGS = {"study_root": "-S", "patient_root": "-P", "patient_study_only": "-O"}
TOP_LEVEL = {"study_root": "STUDY", "patient_root": "PATIENT", "patient_study_only": "PATIENT"}
TLS_TOOLS = ("echoscu", "findscu", "storescp")
NO_TLS_NOTE = ("DCMTK 3.6.7's movescu and getscu cannot speak TLS; this retrieve has no DCMTK "
               "equivalent over TLS.")


@dataclass
class Command:
    """One command line, what it does, and what qrdoctor saw for the same exchange."""

    argv: list[str]
    purpose: str
    qrdoctor_saw: str = ""

    @property
    def line(self) -> str:
        """The shell-quoted command; values from the PACS (UIDs) lose any control characters,
        so one command stays one line."""
        return shlex.join(for_terminal(a) for a in self.argv)


@dataclass
class Reproduction:
    check_id: str
    commands: list[Command] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Plain text: each command after a comment line saying what it does."""
        out: list[str] = []
        for c in self.commands:
            said = f" (qrdoctor saw: {c.qrdoctor_saw})" if c.qrdoctor_saw else ""
            out.append(f"# {c.purpose}{said}")
            out.append(c.line)
        out += [f"# {n}" for n in self.notes]
        return out


class _Builder:
    """Command lines for one report's target."""

    def __init__(self, t: TargetInfo) -> None:
        self.host, self.port = t.host, str(t.port)
        self.calling, self.called, self.move_ae = t.calling_ae, t.called_ae, t.move_ae
        self.store_port = t.store_port
        self.tls = t.tls
        # DCMTK takes whole seconds; qrdoctor's timeout, rounded up (10 s when not recorded)
        self.connect_timeout = max(1, math.ceil(t.timeout_s)) if t.timeout_s else 10
        self.notes: list[str] = []

    def tls_args(self) -> list[str]:
        tls = self.tls or {}
        cert = tls.get("client_certificate")
        args = ["+tls", cert, cert] if cert else ["+tla"]
        if cert:
            self.note("+tls takes the private key file first and the certificate second; the "
                       "report does not record the key file, so the certificate file stands for "
                       "both (give the key file first if it is separate).")
        if tls.get("verify") is False:
            return [*args, "-ic"]
        if tls.get("ca_file"):
            return [*args, "+cf", tls["ca_file"]]
        capath = ssl.get_default_verify_paths().openssl_capath
        self.note(f"+cd {capath} trusts this computer's certificate authorities, as qrdoctor did "
                   "without --tls-ca.")
        return [*args, "+cd", capath]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def scu(self, tool: str, *args: str, calling: str | None = None, called: str | None = None) -> list[str] | None:
        """``tool -v -aet CALLING -aec CALLED [TLS] ARGS HOST PORT``; None when the tool cannot
        do TLS and the target needs it."""
        argv = [tool, "-v", "-aet", calling or self.calling, "-aec", called or self.called]
        if self.tls:
            if tool not in TLS_TOOLS:
                self.note(NO_TLS_NOTE)
                return None
            argv += self.tls_args()
        return [*argv, *(str(a) for a in args), self.host, self.port]

    def find(self, model: str, level: str, keys: dict[str, str]) -> list[str] | None:
        args = [MODEL_FLAGS.get(model, "-S"), "-k", f"QueryRetrieveLevel={level}"]
        for k, v in keys.items():
            args += ["-k", f"{k}={v}" if v else k]
        return self.scu("findscu", *args)


def _facts(c: CheckResult) -> dict[str, Any]:
    return c.facts if isinstance(c.facts, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    """A fact that should be an object (a report from elsewhere may hold anything)."""
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    """The objects of a fact that should be a list of objects."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _matches(n: Any, status: Any = None) -> str:
    if n is None:
        return ""
    s = f"{n} match{'es' if n != 1 else ''}"
    return f"{s}, final status {status}" if status else s


def _echo(b: _Builder, c: CheckResult) -> list[Command]:
    f = _facts(c)
    saw = ""
    if "accepted" in f:
        saw = (f"association accepted, C-ECHO status {f.get('echo_status') or 'none'}" if f["accepted"]
               else f"association not accepted ({f.get('probe_result') or c.summary})")
    argv = b.scu("echoscu")
    return [Command(argv, "association and C-ECHO", saw)] if argv else []


def _tcp(b: _Builder, c: CheckResult) -> list[Command]:
    argv = b.scu("echoscu", "-to", str(b.connect_timeout))
    saw = _facts(c).get("result", "")
    return [Command(argv, "DCMTK has no TCP-only test: echoscu opens the same TCP connection first",
                    f"TCP {saw}" if saw else "")] if argv else []


def _tls(b: _Builder, c: CheckResult) -> list[Command]:
    if not b.tls:
        return []
    argv = b.scu("echoscu")
    return [Command(argv, "TLS handshake, then an association and C-ECHO",
                    str(_facts(c).get("outcome") or ""))] if argv else []


def _ae_titles(b: _Builder, c: CheckResult) -> list[Command]:
    probes = _dict(_facts(c).get("probes"))
    out = []
    wrong = _dict(probes.get("wrong_called_ae"))
    if wrong.get("called_ae"):
        argv = b.scu("echoscu", called=wrong["called_ae"])
        if argv:
            out.append(Command(argv, f"a called AE title that is not the PACS's, {wrong['called_ae']}", str(wrong.get("probe_result") or "")))
    unknown = _dict(probes.get("unknown_calling_ae"))
    if unknown.get("calling_ae"):
        argv = b.scu("echoscu", calling=unknown["calling_ae"])
        if argv:
            out.append(Command(argv, f"a calling AE title the PACS cannot know, {unknown['calling_ae']}", str(unknown.get("probe_result") or "")))
    return out


def _models(b: _Builder, c: CheckResult) -> list[Command]:
    out = []
    for model, ops in _dict(_facts(c).get("models")).items():
        if model not in MODEL_FLAGS:
            continue
        argv = b.find(model, TOP_LEVEL[model], {})
        if argv:
            saw = "C-FIND context accepted" if _dict(ops).get("find") else "C-FIND context not accepted"
            out.append(Command(argv, f"propose the {model.replace('_', ' ')} C-FIND model", saw))
    return out


def _unique(level: str) -> str:
    """The unique key of a top query level (PS3.4 C.6.1.1.2, C.6.2.1.2): the one return key a
    universal query at that level asks for (a key of a lower level does not belong in it)."""
    return "PatientID" if level == "PATIENT" else "StudyInstanceUID"


def _levels(b: _Builder, c: CheckResult) -> list[Command]:
    out = []
    sample = _facts(c).get("sample_size")
    for row in _rows(_facts(c).get("levels")):
        if row.get("matching_keys") or row.get("skipped") or row.get("model") not in MODEL_FLAGS:
            continue
        level = row.get("level") or "STUDY"
        argv = b.find(row["model"], level, {_unique(level): ""})
        if argv:
            complete = row.get("complete") is not False
            saw = _matches(row.get("matches"), row.get("status") if complete else None)
            if not complete:
                # find.levels reads a sample and cancels the rest (findscu lists every match)
                sampled = (isinstance(sample, int) and (row.get("matches") or 0) >= sample > 0
                           and row.get("status") and not (row.get("timed_out") or row.get("aborted")))
                saw += (f"; qrdoctor cancelled the query after a sample of {sample}" if sampled
                        else "; the answer was not complete")
            out.append(Command(argv, f"universal {level}-level C-FIND, {row['model'].replace('_', ' ')}", saw))
    if any(r.get("matching_keys") for r in _rows(_facts(c).get("levels"))):
        b.note("The lower levels were queried with UIDs from the PACS's answers, which the report "
                "does not record; add -k StudyInstanceUID=... (and -k SeriesInstanceUID=...) from "
                "the answers above to repeat them.")
    return out


def _return_keys(b: _Builder, c: CheckResult) -> list[Command]:
    out = []
    seen: set[tuple[str, str]] = set()
    for row in _rows(_facts(c).get("empty_keys")):
        where = (row.get("model"), row.get("level"))
        if where in seen or where[0] not in MODEL_FLAGS or where[1] != TOP_LEVEL.get(where[0]):
            continue
        seen.add(where)
        keys = [str(r.get("key")) for r in _rows(_facts(c).get("empty_keys"))
                if (r.get("model"), r.get("level")) == where and r.get("key")]
        argv = b.find(where[0], where[1], {_unique(where[1]): "", **dict.fromkeys(keys, "")})
        if argv:
            out.append(Command(argv, f"{where[1]}-level C-FIND asking for {', '.join(keys)}",
                               f"{', '.join(keys)} empty or absent"))
    return out


def _conformance(b: _Builder, c: CheckResult) -> list[Command]:
    out = []
    for row in _rows(_facts(c).get("levels")):
        model, level = row.get("model"), row.get("level")
        if model in MODEL_FLAGS and level == TOP_LEVEL.get(model):
            argv = b.find(model, level, {_unique(level): ""})
            if argv:
                out.append(Command(argv, f"{level}-level C-FIND, {model.replace('_', ' ')}",
                                   f"{row.get('rows')} answers, {row.get('distinct')} distinct"))
    return out


def _match_limit(b: _Builder, c: CheckResult) -> list[Command]:
    f = _facts(c)
    model, level = f.get("model") or "study_root", f.get("level") or "STUDY"
    out = []
    uq = _dict(f.get("universal_query"))
    argv = b.find(model, level, {"StudyInstanceUID": ""})
    if argv and (uq or "limit" in f):
        saw = _matches(uq.get("matches"), uq.get("status"))
        if f.get("probed_up_to") is not None and f.get("limit") is None:
            saw += f"; qrdoctor counted up to {f['probed_up_to']}"
        out.append(Command(argv, f"universal {level}-level C-FIND: count its answers", saw))
    for part in _rows(_dict(f.get("proof")).get("parts")):
        key, _, value = str(part.get("query", "")).partition("=")
        argv = b.find(model, level, {"StudyInstanceUID": "", key: value}) if key else None
        if argv:
            out.append(Command(argv, f"one half of the archive by {key}", _matches(part.get("matches"))))
    return out


# The name probes worth repeating by hand: a prefix, its case, a leading wildcard, a pattern
# across the ^ and a non-ASCII name (the others vary these).
WILDCARD_PROBES = ("prefix", "case", "leading", "given_prefix", "non_ascii_prefix")


def _wildcards(b: _Builder, c: CheckResult) -> list[Command]:
    out = []
    for p in _rows(_facts(c).get("probes")):
        pattern = p.get("pattern")
        if not pattern or p.get("probe") not in WILDCARD_PROBES:
            continue
        argv = b.find("study_root", "STUDY", {"StudyInstanceUID": "", "PatientName": pattern})
        if argv:
            saw = _matches(p.get("matches"), p.get("status")) + f"; expected: {p.get('expected')}"
            out.append(Command(argv, f"PatientName probe '{p.get('probe')}'", saw))
    if out:
        b.note("The report keeps patient names out: replace <family>, <given>, <family:3> (its first "
                "three letters) and so on with the name of a patient the PACS holds, as qrdoctor did "
                "with a name from the PACS's own answers.")
    return out


def _ranges(b: _Builder, c: CheckResult) -> list[Command]:
    f = _facts(c)
    if not f.get("probes"):
        return []
    out = []
    for what, value in (("single", "<date>"), ("closed", "<date-1>-<date+1>"), ("open_end", "<date>-"),
                        ("open_start", "-<date>")):
        probe = _dict(f.get("probes")).get(what)
        argv = b.find("study_root", "STUDY", {"StudyInstanceUID": "", "PatientID": "<patient ID>",
                                               "StudyDate": value})
        if probe is not None and argv:
            out.append(Command(argv, f"StudyDate {what.replace('_', ' ')} match",
                               f"{probe.get('got')} (expected {probe.get('expected')})"))
    if out:
        b.note("The date probes use one patient's study, which the report does not identify: put "
                "a Patient ID and that study's date (YYYYMMDD) in place of the values in angle "
                "brackets.")
    return out


def _lists(b: _Builder, c: CheckResult) -> list[Command]:
    probes = _dict(_facts(c).get("probes"))
    out = []
    ui = probes.get("ui_list")
    ui = ui if ui is None else _dict(ui)
    argv = b.find("study_root", "STUDY", {"StudyInstanceUID": "<uid1>\\<uid2>"})
    if ui is not None and argv:
        out.append(Command(argv, "a list of two Study Instance UIDs",
                           f"{ui.get('got')} (expected {ui.get('expected')})"))
    cs = probes.get("cs_list")
    cs = cs if cs is None else _dict(cs)
    argv = b.find("study_root", "SERIES", {"StudyInstanceUID": "<uid1>", "SeriesInstanceUID": "",
                                            "Modality": "<a modality of the study>\\<one it lacks>"})
    if cs is not None and argv:
        out.append(Command(argv, "a list of two modalities within one study, one present and one absent",
                           f"{cs.get('got')} (expected {cs.get('expected')})"))
    if out:
        b.note("The UIDs and modalities come from the PACS's answers, which the report does not "
                "record: put UIDs of studies the PACS holds, and a modality that one study's series "
                "have and one they lack, in place of the values in angle brackets.")
    return out


def _subject_keys(f: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    subject = _dict(f.get("subject"))
    study = subject.get("study_instance_uid")
    if not study:
        return None
    level = subject.get("level") or "STUDY"
    keys = {"StudyInstanceUID": study}
    if level == "SERIES" and subject.get("series_instance_uid"):
        keys["SeriesInstanceUID"] = subject["series_instance_uid"]
    return level, keys


def _retrieve_args(f: dict[str, Any], level: str, keys: dict[str, str]) -> list[str]:
    model = f.get("model") or "study_root"
    args = [MODEL_FLAGS.get(model, "-S"), "-k", f"QueryRetrieveLevel={level}"]
    if model == "patient_root":
        args += ["-k", "PatientID=<patient ID>"]
    for k, v in keys.items():
        args += ["-k", f"{k}={v}"]
    return args


def _counts(f: dict[str, Any]) -> str:
    if f.get("completed") is None and f.get("status") is None:
        return ""
    return (f"status {f.get('status')}, completed {f.get('completed')}, failed {f.get('failed')}, "
            f"warning {f.get('warning')}; {f.get('received')} objects received")


def _move(b: _Builder, c: CheckResult) -> list[Command]:
    f = _facts(c)
    subject = _subject_keys(f)
    if subject is None:
        return []
    level, keys = subject
    accept = ["+xa"] if (f.get("store_accept") or "all") == "all" else []
    move_ae = f.get("move_ae") or b.move_ae
    argv = b.scu("movescu", *_retrieve_args(f, level, keys), "-aem", move_ae, "+P", str(b.store_port),
                 *accept, "--ignore")
    if argv is None:
        return []
    out = [Command(argv, f"C-MOVE of the {level.lower()} to {move_ae}; movescu receives the objects "
                   f"itself on port {b.store_port} (--ignore: without writing them)", _counts(f))]
    store = ["storescp", "-v", "-aet", move_ae, *accept, "-od", ".", str(b.store_port)]
    out.append(Command(store, f"or receive with storescp on port {b.store_port} (then run movescu "
                       "without +P and --ignore)"))
    if f.get("model") == "patient_root":
        b.note("A Patient Root retrieve needs the Patient ID, which the report does not show.")
    return out


def _get(b: _Builder, c: CheckResult) -> list[Command]:
    f = _facts(c)
    subject = _subject_keys(f)
    if subject is None:
        return []
    level, keys = subject
    argv = b.scu("getscu", *_retrieve_args(f, level, keys), "--ignore")
    return [Command(argv, f"C-GET of the {level.lower()} (--ignore: received, not written)",
                    _counts(f))] if argv else []


BUILDERS: dict[str, Callable[[_Builder, CheckResult], list[Command]]] = {
    "network.tcp": _tcp,
    "network.tls": _tls,
    "association.echo": _echo,
    "association.ae_titles": _ae_titles,
    "association.models": _models,
    "find.levels": _levels,
    "find.conformance": _conformance,
    "find.return_keys": _return_keys,
    "find.match_limit": _match_limit,
    "match.wildcards": _wildcards,
    "match.ranges": _ranges,
    "match.lists": _lists,
    "retrieve.move": _move,
    "retrieve.get": _get,
}


def reproduction(report: Report, check: CheckResult | str) -> Reproduction | None:
    """The DCMTK commands that repeat one check's exchange with the PACS (None when the check
    sent nothing that DCMTK can repeat, e.g. it was skipped)."""
    c = check if isinstance(check, CheckResult) else next((r for r in report.checks if r.id == check), None)
    if c is None or c.id not in BUILDERS or c.status.value == "skipped":
        return None
    return _reproduce(report.target, c)


def _reproduce(target: TargetInfo, c: CheckResult) -> Reproduction | None:
    if c.id not in BUILDERS or c.status.value == "skipped":
        return None
    b = _Builder(target)
    try:
        commands = BUILDERS[c.id](b, c)
    except (TypeError, AttributeError, ValueError):  # facts of another shape (another version)
        return None
    if not commands and not b.notes:
        return None
    return Reproduction(check_id=c.id, commands=commands, notes=b.notes)


def reproductions(report: Report) -> dict[str, Reproduction]:
    """Every check's reproduction, by check id."""
    out = {}
    for c in report.checks:
        r = reproduction(report, c)
        if r is not None:
            out[c.id] = r
    return out


def check_lines(target: Any, result: CheckResult | None) -> list[str]:
    """The reproduction of one (redacted) result as text lines, for a target given as the
    report's :class:`TargetInfo` or as the run's ``Target`` (the TUI's details); empty when
    there is nothing to repeat."""
    if target is None or result is None:
        return []
    if not isinstance(target, TargetInfo):
        tls = getattr(target, "tls", None)
        target = TargetInfo(host=target.host, port=target.port, called_ae=target.called_ae,
                            calling_ae=target.calling_ae, move_ae=target.move_ae or target.calling_ae,
                            store_port=target.store_port, timeout_s=target.timeout,
                            tls=tls.describe() if tls is not None else None)
    rep = _reproduce(target, result)
    return rep.lines() if rep is not None else []
