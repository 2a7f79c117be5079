"""dicomweb.wado: WADO-RS retrieval as a viewer sees it.

Observe picks one instance by QIDO-RS (``studies`` -> ``series`` -> ``instances``, ``limit=1``
each), reads the series' ``/metadata`` (DICOM JSON, instance count, BulkDataURI hosts), then
retrieves that one instance with each Accept variant of :data:`VARIANTS` (the server's default,
``transfer-syntax=*``, Explicit VR Little Endian, a compressed syntax, a bare
``application/dicom``), reading each answer strictly: the multipart envelope, each part's
Content-Type and transfer-syntax parameter, and the Part 10 header with pydicom (SOP Instance UID,
transfer syntax; no pixel decoding). RetrieveURL values of the QIDO answers and BulkDataURIs of
the metadata are compared with the base URL's scheme, host and port. Conclude turns that into
findings (see :mod:`qrdoctor.checks.dicomweb.wado_findings`).
"""

from __future__ import annotations

import re
from typing import Any

from qrdoctor.checks.dicomweb import wado_findings as wf
from qrdoctor.checks.dicomweb.common import client, options_credentials
from qrdoctor.checks.dicomweb.options import DicomwebOptions
from qrdoctor.checks.dicomweb.wado_model import (
    MetadataRead,
    PartInfo,
    QidoStep,
    VariantRead,
    WadoFacts,
    WadoObservation,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Stage, Status
from qrdoctor.core.registry import define
from qrdoctor.dicomweb import jsonmodel
from qrdoctor.dicomweb.http import WebClient, WebResponse
from qrdoctor.dicomweb.instance import VARIANTS, foreign_url, read_answer
from qrdoctor.dicomweb.jsonmodel import parse_dataset_list

DICOM_JSON = "application/dicom+json"
RETRIEVE_URL = "00081190"
RETRIEVE_URI = "0040E010"
SOP_UID = "00080018"
SERIES_INSTANCES = "00201209"
BODY_PREVIEW = 200
MAX_URLS = 200  # URLs compared per answer
# Bytes read of each instance answer: enough for the multipart envelope and the Part 10 header of
# any instance; of a larger one only the start is judged (the facts say so)
WADO_READ = 16 * 1024 * 1024

CODES = ("dicomweb-metadata-failed", "dicomweb-format-refused", "dicomweb-multipart-malformed",
         "dicomweb-retrieve-url-mismatch", "dicomweb-instance-unreadable")

chk = define(
    "dicomweb.wado", stage=Stage.DICOMWEB, title="WADO-RS retrieval",
    observation=WadoObservation, facts=WadoFacts, options=DicomwebOptions, codes=CODES,
    requires=("dicomweb.qido",), budget=12.0, peer_associations=0, enabled_by="dicomweb",
)


# -- observe ------------------------------------------------------------------------------------


def _preview(r: WebResponse, web: WebClient) -> str:
    """The start of an error answer's body, as text, without any of the credentials' secrets."""
    if r.ok or not r.body:
        return ""
    text = web.redact(r.body[:BODY_PREVIEW * 4].decode("utf-8", "replace"))
    return " ".join(text.split())[:BODY_PREVIEW]


def _urls(rows: list[dict[str, Any]], base: str, where: str) -> tuple[int, list[dict[str, str]]]:
    """How many RetrieveURL/RetrieveURI/BulkDataURI values the rows hold, and those that do not
    point at the base URL's origin."""
    seen = 0
    foreign: list[dict[str, str]] = []
    for row in rows:
        found = [(t, u) for t in (RETRIEVE_URL, RETRIEVE_URI) for u in jsonmodel.values(row, t)]
        found += list(jsonmodel.bulk_data_uris(row))
        for tag, url in found[:MAX_URLS]:
            seen += 1
            why = foreign_url(base, url)
            if why and len(foreign) < 5:
                kind = {RETRIEVE_URL: "RetrieveURL", RETRIEVE_URI: "RetrieveURI"}.get(tag, "BulkDataURI")
                foreign.append({"where": where, "attribute": kind, "url": url[:300], "why": why})
    return seen, foreign


def _qido_step(web: WebClient, ctx: Context, what: str, path: str, unique: str,
               obs: WadoObservation) -> str | None:
    """One QIDO-RS request of the selection; the first row's ``unique`` value."""
    ctx.raise_if_cancelled()
    web.timeout = ctx.timeout()
    ctx.progress(f"WADO-RS: picking an instance ({what})")
    r = web.get(path, {"limit": 1}, accept=DICOM_JSON)
    rows, problem = ([], None) if r.status == 204 else parse_dataset_list(r.body) if r.ok else ([], None)
    step = QidoStep(what=what, status=r.status, error=r.error.detail if r.error else None,
                    rows=len(rows), problem=problem, preview=_preview(r, web))
    obs.qido.append(step)
    if rows:
        seen, foreign = _urls(rows[:1], web.base_url, f"QIDO-RS {what}")
        obs.urls_checked += seen
        obs.foreign_urls.extend(foreign)
    uid = jsonmodel.value(rows[0], unique) if rows else None
    if what == "series" and rows:
        count = jsonmodel.value(rows[0], SERIES_INSTANCES)
        obs.series_instances = int(count) if count and re.fullmatch(r"[0-9]{1,9}", count.strip()) else None
    return uid


def _metadata(web: WebClient, ctx: Context, path: str, obs: WadoObservation) -> None:
    ctx.raise_if_cancelled()
    web.timeout = ctx.timeout()
    ctx.progress("WADO-RS: series metadata")
    r = web.get(path + "/metadata", accept=DICOM_JSON)
    meta = MetadataRead(status=r.status, reason=r.reason, content_type=r.content_type,
                        error=r.error.kind if r.error else None, error_detail=r.error.detail if r.error else None,
                        bytes=len(r.body), ms=round(r.elapsed_s * 1000), preview=_preview(r, web))
    if r.status is not None and 200 <= r.status < 300 and r.error is None:
        rows, problem = parse_dataset_list(r.body)
        meta.instances = len(rows)
        meta.problem = problem
        meta.has_sop = any(jsonmodel.value(row, SOP_UID) == obs.sop_uid for row in rows)
        seen, foreign = _urls(rows, web.base_url, "series metadata")
        obs.urls_checked += seen
        obs.foreign_urls.extend(foreign[: max(0, 10 - len(obs.foreign_urls))])
    obs.metadata = meta


def _variant(web: WebClient, ctx: Context, url: str, name: str) -> VariantRead:
    variant = next(v for v in VARIANTS if v.name == name)
    ctx.raise_if_cancelled()
    web.timeout = ctx.timeout()
    ctx.progress(f"WADO-RS: one instance, Accept {variant.accept}")
    r = web.get(url, accept=variant.accept)
    out = VariantRead(name=name, accept=variant.accept, status=r.status, reason=r.reason,
                      content_type=r.content_type, bytes=len(r.body), ms=round(r.elapsed_s * 1000),
                      error=r.error.kind if r.error else None, error_detail=r.error.detail if r.error else None,
                      preview=_preview(r, web))
    if r.status is None or not 200 <= r.status < 300 or (r.error and r.error.kind != "too-large"):
        return out
    out.complete = r.error is None
    answer = read_answer(r.content_type, r.body, complete=out.complete)
    out.multipart = answer.multipart
    out.not_dicom = answer.not_dicom
    out.problems = answer.problems
    out.notes = answer.notes
    out.parts = [PartInfo(**vars(p)) for p in answer.parts]
    return out


@chk.observe
def observe(ctx: Context) -> WadoObservation:
    opts = ctx.option(DicomwebOptions)
    base = ctx.facts("dicomweb.qido").get("root") or opts.dicomweb or ""
    creds, problem = options_credentials(opts)
    obs = WadoObservation(base_url=base)
    if problem:
        obs.selection_problem = problem
        return obs
    web = client(ctx, base, creds)
    try:
        study = _qido_step(web, ctx, "studies", "studies", "StudyInstanceUID", obs)
        series = _qido_step(web, ctx, "series", f"studies/{study}/series", "SeriesInstanceUID", obs) if study else None
        sop = (_qido_step(web, ctx, "instances", f"studies/{study}/series/{series}/instances", "SOPInstanceUID", obs)
               if series else None)
        obs.study_uid, obs.series_uid, obs.sop_uid = study, series, sop
        if sop:
            series_path = f"studies/{study}/series/{series}"
            _metadata(web, ctx, series_path, obs)
            web.max_body = WADO_READ
            for v in VARIANTS:
                obs.variants.append(_variant(web, ctx, f"{series_path}/instances/{sop}", v.name))
    finally:
        obs.exchanges = [e.as_dict() for e in web.exchanges]
        web.close()
    return obs


# -- conclude -----------------------------------------------------------------------------------


@chk.conclude
def conclude(obs: WadoObservation, s: Situation) -> Outcome:
    if obs.selection_problem:
        return Outcome(summary=obs.selection_problem, status=Status.SKIPPED, reason=obs.selection_problem)
    if not obs.sop_uid:
        reason = wf.selection_reason(obs)
        return Outcome(summary=reason, status=Status.SKIPPED, reason=reason, facts=wf.facts(obs))
    findings = [*wf.metadata_findings(obs, s), *wf.variant_findings(obs, s), *wf.url_findings(obs, s)]
    return Outcome(summary=wf.summary(obs, findings), findings=findings, facts=wf.facts(obs))
