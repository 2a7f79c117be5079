"""The findings and facts of dicomweb.wado, with the real URLs, statuses and syntaxes filled in.

How much a refused or broken answer matters depends on the Accept variant: the server's default
and ``transfer-syntax=*`` are what viewers ask for (a failure there fails the check); Explicit VR
Little Endian is what a viewer that cannot decode the stored compression needs (a warning);
a compressed syntax on request and a bare ``application/dicom`` single part are optional (notes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from qrdoctor.checks.dicomweb.wado_model import VariantRead, WadoFacts, WadoObservation
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Finding, Severity, actions
from qrdoctor.dicomweb.instance import (
    EXPLICIT_LE,
    IMPLICIT_LE,
    VARIANTS,
    AnswerRead,
    PartRead,
    ts_name,
    ts_param_problems,
)

EXPLICIT_BE = "1.2.840.10008.1.2.2"
# transfer syntaxes whose pixel data may be lossy: PS3.18 §8.7.3.4 lets a server return them in
# place of Explicit VR Little Endian when it holds only the lossy form
MAY_BE_LOSSY = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203", *(f"1.2.840.10008.1.2.4.{n}" for n in range(100, 109)),
})
MAIN = ("default", "any")
RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.FAIL: 2}
SHORT = {"default": "the default Accept", "any": "transfer-syntax=*", "explicit-le": "Explicit VR Little Endian",
         "compressed": "RLE Lossless", "single-part": "a bare application/dicom"}
OPTIONAL = ("compressed", "single-part")
ACCEPTS = {v.name: v.accept for v in VARIANTS}
STATUS_MEANING = {
    206: "only part of the data came back in the format asked for",
    400: "the server takes the request as invalid; servers answer so to an Accept header they do not support",
    401: "credentials are needed or were not accepted",
    403: "the credentials are not allowed to retrieve",
    404: "the server does not find the instance that QIDO-RS listed",
    406: "the server cannot deliver the instance in this format",
    415: "the server rejects the media type asked for",
    500: "the server failed while preparing the answer; a failed conversion answers so on some servers",
    501: "the server does not implement this retrieval",
    502: "a reverse proxy got no valid answer from the archive behind it",
    503: "the server is unavailable or overloaded",
    504: "a reverse proxy gave up waiting for the archive behind it",
}
TESTER = "After the change, re-test with qrdoctor check --dicomweb {base} --only dicomweb.wado."


def _strict(name: str) -> Severity:
    """A broken answer (wrong data, unreadable, malformed)."""
    return Severity.FAIL if name in MAIN else Severity.WARN


def _refusal(name: str) -> Severity:
    """A format that was asked for and refused."""
    if name in MAIN:
        return Severity.FAIL
    return Severity.WARN if name == "explicit-le" else Severity.INFO


def _meaning(status: int, retrieval: bool = True) -> str:
    if status == 500 and not retrieval:
        return "a server error"
    if status in STATUS_MEANING:
        return STATUS_MEANING[status]
    return "a server error" if status >= 500 else "the request was not served"


def _instance_path(obs: WadoObservation) -> str:
    return f"studies/{obs.study_uid}/series/{obs.series_uid}/instances/{obs.sop_uid}"


class _Collector:
    """What went wrong per finding code: each distinct sentence with the variants it applies to
    and the worst severity among them."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, tuple[Severity, list[str]]]] = {}

    def add(self, code: str, severity: Severity, variant: str, sentence: str) -> None:
        texts = self.items.setdefault(code, {})
        old, variants = texts.get(sentence, (Severity.INFO, []))
        texts[sentence] = (max(old, severity, key=RANK.__getitem__), [*variants, variant])

    def worst(self, code: str) -> Severity:
        return max((sev for sev, _ in self.items[code].values()), key=RANK.__getitem__)

    def sentences(self, code: str, limit: int = 4) -> str:
        lines = [f"{', '.join(SHORT.get(v, v) for v in dict.fromkeys(vs))}: {t}"
                 for t, (_, vs) in self.items[code].items()]
        more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
        return "; ".join(lines[:limit]) + more

    def variants(self, code: str) -> list[str]:
        return list(dict.fromkeys(v for _, vs in self.items[code].values() for v in vs))


def _read_variant(v: VariantRead, obs: WadoObservation, c: _Collector) -> None:
    if v.status is None:
        c.add("dicomweb-instance-unreadable", _strict(v.name), v.name,
              f"no complete answer ({v.error_detail or v.error})")
        return
    if not v.success:
        text = f"HTTP {v.status} {v.reason}".rstrip() + f" ({_meaning(v.status)})"
        if v.status >= 500 and v.name in ("explicit-le", "compressed"):
            text += "; PS3.18 prescribes 406 when a server cannot produce the transfer syntax asked for"
        c.add("dicomweb-format-refused", _refusal(v.name), v.name, text)
        return
    if v.error == "timeout":
        c.add("dicomweb-instance-unreadable", Severity.WARN, v.name,
              f"HTTP {v.status}, but the answer was still incomplete at the time limit ({v.bytes} bytes received)")
        return
    if v.error and v.error != "too-large":  # too-large: only the start was read and judged
        c.add("dicomweb-instance-unreadable", _strict(v.name), v.name,
              f"HTTP {v.status}, but the answer was cut off ({v.error_detail})")
        return
    if v.not_dicom:
        c.add("dicomweb-instance-unreadable", _strict(v.name), v.name, f"HTTP {v.status}, but {v.not_dicom}")
        return
    if v.problems:
        c.add("dicomweb-multipart-malformed", _strict(v.name), v.name, "; ".join(v.problems[:3]))
    if not v.parts:
        if not v.problems:
            c.add("dicomweb-instance-unreadable", _strict(v.name), v.name, "the answer holds no part")
        return
    if len(v.parts) > 1:
        c.add("dicomweb-multipart-malformed", Severity.WARN, v.name,
              f"{len(v.parts)} parts for one instance")
    for i, p in enumerate(v.parts, 1):
        if p.unreadable:
            c.add("dicomweb-instance-unreadable", _strict(v.name), v.name,
                  f"part {i} is {p.unreadable}" if p.unreadable.startswith("not ") else f"part {i}: {p.unreadable}")
        elif p.sop_instance_uid != obs.sop_uid:
            c.add("dicomweb-instance-unreadable", _strict(v.name), v.name,
                  f"part {i} holds SOP Instance UID {p.sop_instance_uid or '(none)'}, not the "
                  f"{obs.sop_uid} asked for")
    answer = AnswerRead(multipart=v.multipart, parts=[PartRead(**p.model_dump()) for p in v.parts])
    for problem in ts_param_problems(answer) if v.multipart else []:
        c.add("dicomweb-multipart-malformed", Severity.WARN, v.name, problem)
    _transfer_syntax(v, c)


def _transfer_syntax(v: VariantRead, c: _Collector) -> None:
    ts = v.transfer_syntax
    if not ts:
        return
    if ts in (IMPLICIT_LE, EXPLICIT_BE):
        c.add("dicomweb-format-refused", Severity.WARN, v.name,
              f"the instance came in {ts_name(ts)}, which PS3.18 §8.7.3 excludes from DICOMweb")
        return
    asked = next((x.asked_ts for x in VARIANTS if x.name == v.name), None)
    if v.name == "default" and ts != EXPLICIT_LE and ts not in MAY_BE_LOSSY:
        c.add("dicomweb-format-refused", Severity.WARN, v.name,
              f"the instance came in {ts_name(ts)}; PS3.18 §8.7.3.4 makes Explicit VR Little Endian "
              "the default unless the server holds only lossy or very large pixel data")
    elif asked and asked != "*" and ts != asked:
        permitted = asked == EXPLICIT_LE and ts in MAY_BE_LOSSY
        severity = Severity.INFO if permitted or v.name != "explicit-le" else Severity.WARN
        c.add("dicomweb-format-refused", severity, v.name,
              f"asked for {ts_name(asked)}, the instance came in {ts_name(ts)}"
              + (" (allowed by PS3.18 §8.7.3.4 when the server holds only lossy pixel data)" if permitted
                 else "; PS3.18 expects the syntax asked for, or 406"))


def _stored(obs: WadoObservation) -> str | None:
    """The transfer syntax the server serves with transfer-syntax=* (usually as stored)."""
    v = next((x for x in obs.variants if x.name == "any" and x.success), None)
    return v.transfer_syntax if v else None


def _worked(obs: WadoObservation) -> list[str]:
    return [v.name for v in obs.variants if v.success and v.transfer_syntax and not v.problems
            and all(p.sop_instance_uid == obs.sop_uid and not p.unreadable for p in v.parts)]


def _format_pacs(obs: WadoObservation, names: list[str], stored: str | None) -> str:
    """The PACS administrator's part of a format finding, by what was refused or not honoured."""
    status = {v.name: v.status for v in obs.variants}
    refused = [n for n in names if status.get(n) is None or not 200 <= status[n] < 300]
    important = [n for n in names if n not in OPTIONAL]
    out = []
    if important:
        out.append(f"Make WADO-RS serve {_instance_path(obs)} in the formats viewers ask for; the DICOMweb "
                   "service's log at the time of this run says why it did not.")
        if "any" in refused:
            out.append("transfer-syntax=* accepts the instance in any syntax, so no conversion is needed: "
                       "refusing it is a defect of the DICOMweb service to report to its vendor.")
        if "explicit-le" in important or "default" in important:
            held = f" (this one is served as {ts_name(stored)})" if stored else ""
            out.append("PS3.18 §8.7.3.4 expects every server to deliver Explicit VR Little Endian, except for "
                       "lossy or very large pixel data; refusing it, or answering in another syntax, usually means the "
                       f"archive does not convert between transfer syntaxes{held}: enable its conversion "
                       "(transcoding) for WADO-RS.")
    else:
        out.append("Only optional formats are concerned: nothing has to change for viewers that ask with the "
                   "default Accept header or transfer-syntax=*.")
        if "compressed" in names:
            out.append("Enable conversion to compressed transfer syntaxes for WADO-RS only if viewers ask for "
                       "them (to save bandwidth).")
        if "single-part" in names:
            out.append("PS3.18 defines the WADO-RS answer as multipart/related; only some clients ask for a "
                       "bare application/dicom single part.")
    if any((status.get(n) or 0) >= 500 for n in refused):
        out.append("Where a conversion is not possible, the answer PS3.18 prescribes is 406 Not Acceptable, "
                   "not a 5xx error: a client that asks again in another format after a 406 may give up "
                   "after a server error.")
    return " ".join(out)


def variant_findings(obs: WadoObservation, s: Situation) -> list[Finding]:
    c = _Collector()
    for v in obs.variants:
        _read_variant(v, obs, c)
    out: list[Finding] = []
    base, path = obs.base_url, _instance_path(obs)
    worked = _worked(obs)
    use = next((ACCEPTS[n] for n in ("any", "default", "explicit-le") if n in worked), None)
    stored = _stored(obs)
    evidence: dict[str, Any] = {"instance": path}
    tester = TESTER.format(base=base)
    if "dicomweb-format-refused" in c.items:
        code = "dicomweb-format-refused"
        names = c.variants(code)
        refused_main = any(n in MAIN for n in names)
        pacs = _format_pacs(obs, names, stored)
        out.append(s.finding(
            code, c.worst(code), f"WADO-RS did not deliver the instance as asked: {c.sentences(code)}.",
            actions(pacs=pacs,
                    workstation=(f"Until then, configure the viewer's WADO-RS Accept header as {use}, which "
                                 "this PACS served" + (f" (the viewer must then decode {ts_name(stored)})"
                                                       if use == ACCEPTS["any"] and stored != EXPLICIT_LE else "")
                                 + "." if use and (refused_main or "explicit-le" in names) else None),
                    users=("Viewers that ask in a refused format show no image for such studies."
                           if refused_main or "explicit-le" in names else None),
                    tester=tester),
            **evidence, variants={n: _variant_facts(v) for v in obs.variants for n in [v.name] if n in names}))
    if "dicomweb-multipart-malformed" in c.items:
        code = "dicomweb-multipart-malformed"
        names = c.variants(code)
        out.append(s.finding(
            code, c.worst(code), f"The WADO-RS multipart answer is malformed: {c.sentences(code)}.",
            actions(pacs=("The multipart/related envelope is built by the PACS's DICOMweb service (or rewritten "
                          "by a reverse proxy in front of it): report the malformation named here to its "
                          "vendor with this report, and check whether a proxy buffers or rewrites WADO-RS "
                          "answers."),
                    users=("Viewers with a strict multipart reader may fail to open these images or "
                           "show them incompletely." if c.worst(code) is Severity.FAIL else None),
                    tester=tester),
            **evidence, variants={v.name: _variant_facts(v) for v in obs.variants if v.name in names}))
    if "dicomweb-instance-unreadable" in c.items:
        code = "dicomweb-instance-unreadable"
        names = c.variants(code)
        out.append(s.finding(
            code, c.worst(code), f"The retrieved instance could not be used: {c.sentences(code)}.",
            actions(pacs=(f"Retrieve {path} on the PACS itself and compare: an answer cut off or holding "
                          "another instance points at the DICOMweb service or a reverse proxy in front of "
                          "it; its log at the time of this run shows the request. A timeout on a large "
                          "instance may also be a proxy's read timeout."),
                    users="Viewers retrieving in these formats get no usable image for this instance.",
                    tester=tester + " Add a larger --timeout if the answer was only slow."),
            **evidence, variants={v.name: _variant_facts(v) for v in obs.variants if v.name in names}))
    return out


def metadata_findings(obs: WadoObservation, s: Situation) -> list[Finding]:
    m = obs.metadata
    if m is None:
        return []
    url = f"{obs.base_url}studies/{obs.study_uid}/series/{obs.series_uid}/metadata"
    ev: dict[str, Any] = {"url": url, "status": m.status, "content_type": m.content_type, "ms": m.ms}
    if m.preview:
        ev["body_start"] = m.preview
    tester = TESTER.format(base=obs.base_url)
    if m.status is None or not 200 <= m.status < 300 or m.error or not m.instances:
        if m.status is None:
            what = f"no complete answer ({m.error_detail})"
        elif not 200 <= m.status < 300:
            what = f"HTTP {m.status} {m.reason}".rstrip() + f" ({_meaning(m.status, retrieval=False)})"
        elif m.error:
            what = f"an answer cut off ({m.error_detail})"
        elif m.problem:
            what = f"HTTP {m.status} that is not DICOM JSON: {m.problem}"
        else:
            what = f"HTTP {m.status} with no dataset"
        return [s.finding(
            "dicomweb-metadata-failed", Severity.FAIL, f"The series metadata request answered {what}.",
            actions(pacs=(f"Make WADO-RS serve the metadata of series {obs.series_uid} (GET .../series/"
                          f"{{uid}}/metadata as application/dicom+json); the DICOMweb service's log at the time "
                          "of this run says why it did not."),
                    users="Web viewers that read a series' metadata before its images cannot open it.",
                    tester=tester),
            **ev)]
    out = []
    if m.problem:
        out.append(s.finding(
            "dicomweb-metadata-failed", Severity.WARN,
            f"The series metadata is DICOM JSON with a defect: {m.problem} (PS3.18 Annex F).",
            actions(pacs=("The DICOMweb service writes an attribute that PS3.18 Annex F does not allow; report it "
                          "to the vendor with this report."),
                    users="Web viewers with a strict DICOM JSON reader may not open the series.",
                    tester=tester),
            **ev, instances=m.instances))
    if m.has_sop is False:
        out.append(s.finding(
            "dicomweb-metadata-failed", Severity.WARN,
            f"The series metadata ({m.instances} datasets) does not include instance {obs.sop_uid}, which "
            "QIDO-RS lists in that series.",
            actions(pacs="QIDO-RS and the metadata disagree about the series' instances: an index that is "
                         "out of date, or instances still being stored. Check the series on the PACS.",
                    tester=tester),
            **ev, instances=m.instances))
    if obs.series_instances is not None and m.instances != obs.series_instances:
        out.append(s.finding(
            "dicomweb-metadata-failed", Severity.WARN,
            f"The series metadata describes {m.instances} instances, but QIDO-RS says the series has "
            f"{obs.series_instances} (NumberOfSeriesRelatedInstances).",
            actions(pacs="The two counts come from the same archive and should agree: an index that is out of "
                         "date, or instances still being stored. Check the series on the PACS.",
                    users="A viewer may show a different number of images than the study list announces.",
                    tester=tester),
            **ev, instances=m.instances, qido_instances=obs.series_instances))
    return out


def url_findings(obs: WadoObservation, s: Situation) -> list[Finding]:
    if not obs.foreign_urls:
        return []
    first = obs.foreign_urls[0]
    p = urlsplit(first["url"])
    theirs = f"{p.scheme}://{p.netloc}" if p.scheme else first["url"]
    ours = urlsplit(obs.base_url)
    kinds = sorted({f["attribute"] for f in obs.foreign_urls})
    return [s.finding(
        "dicomweb-retrieve-url-mismatch", Severity.WARN,
        f"{' and '.join(kinds)} values point at {theirs}, not at the base URL's {ours.scheme}://{ours.netloc} "
        f"({first['why']}; {len(obs.foreign_urls)} of {obs.urls_checked} URLs seen).",
        actions(pacs=(f"Set the archive's public (external) base URL for DICOMweb to {ours.scheme}://{ours.netloc}"
                      f"{ours.path}, or make the reverse proxy in front of it pass the original host and scheme "
                      "(the Forwarded header, or X-Forwarded-Host and X-Forwarded-Proto) if the archive builds "
                      "its URLs from them."),
                  workstation=("If the viewer can build retrieve URLs from its configured base URL instead of "
                               "following the URLs the PACS returns, use that until the PACS is fixed."),
                  users=(f"Viewers that follow these URLs try to reach {theirs}; from where that address does "
                         "not resolve or is not allowed, their images do not load."),
                  tester=TESTER.format(base=obs.base_url)),
        urls=obs.foreign_urls, checked=obs.urls_checked)]


def selection_reason(obs: WadoObservation) -> str:
    for step in obs.qido:
        if step.status is None:
            return f"not tested: QIDO-RS {step.what} got no answer ({step.error})"
        if not (200 <= step.status < 300):
            return f"not tested: QIDO-RS {step.what} answered HTTP {step.status}"
        if step.problem:
            return f"not tested: the QIDO-RS {step.what} answer is not DICOM JSON ({step.problem})"
        if step.rows == 0:
            return f"not tested: QIDO-RS lists no {step.what} to retrieve"
    return "not tested: no instance to retrieve"


def _variant_facts(v: VariantRead) -> dict[str, Any]:
    out: dict[str, Any] = {"accept": v.accept, "status": v.status, "content_type": v.content_type,
                           "parts": len(v.parts), "transfer_syntax": v.transfer_syntax, "bytes": v.bytes, "ms": v.ms}
    if v.error and v.error != "too-large":
        out["error"] = v.error_detail or v.error
    if not v.complete:
        out["complete"] = False
    if v.problems:
        out["problems"] = v.problems
    if v.notes:
        out["notes"] = v.notes
    if v.preview:
        out["body_start"] = v.preview
    return out


def facts(obs: WadoObservation) -> WadoFacts:
    m = obs.metadata
    return WadoFacts(
        base_url=obs.base_url,
        instance={"study": obs.study_uid, "series": obs.series_uid, "sop": obs.sop_uid} if obs.sop_uid else None,
        metadata=({"status": m.status, "instances": m.instances, "expected": obs.series_instances, "ms": m.ms}
                  if m else None),
        variants={v.name: _variant_facts(v) for v in obs.variants} or None,
        retrieve_urls={"checked": obs.urls_checked, "foreign": obs.foreign_urls} if obs.sop_uid else None,
        requests=obs.exchanges or None)


PROBLEM_WORDS = {"dicomweb-metadata-failed": "series metadata problem", "dicomweb-format-refused": "format refused",
                 "dicomweb-multipart-malformed": "malformed multipart answer",
                 "dicomweb-retrieve-url-mismatch": "retrieve URLs point elsewhere",
                 "dicomweb-instance-unreadable": "instance unusable"}


def summary(obs: WadoObservation, findings: Iterable[Finding]) -> str:
    served = [v.name for v in obs.variants if v.name in _worked(obs)]
    head = (f"Instance retrieved in {len(served)} of {len(obs.variants)} formats"
            + (f" (with transfer-syntax=*: {ts_name(_stored(obs))})" if _stored(obs) else ""))
    problems = list(dict.fromkeys(PROBLEM_WORDS.get(f.code, f.code) for f in findings if f.severity is not Severity.INFO))
    return head + (f"; {', '.join(problems)}." if problems else "; metadata and retrieve URLs in order.")
