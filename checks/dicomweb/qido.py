"""dicomweb.qido: the QIDO-RS endpoint as a viewer or AI node sees it.

Observe asks, at the base URL: ``studies?limit=1`` (reachability, TLS, root, authentication);
on a 404 the usual roots on the same origin; then ``studies`` with no limit (the count, a
``Warning``), ``limit``/``offset`` pages, a page past the unlimited count, two disjoint StudyDate
ranges, ``includefield=all``, a PatientName prefix in two cases, one study's series, and, when the
run has a DIMSE target whose C-FIND model was accepted, the same STUDY-level query by C-FIND
(see :mod:`qrdoctor.checks.dicomweb.parity`). Conclude classifies what it saw; every request is in
the facts without credentials.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from qrdoctor.checks.dicomweb import parity
from qrdoctor.checks.dicomweb.common import (
    SERIES_UID,
    WebAnswer,
    challenge_info,
    client,
    options_credentials,
    origin_of,
    record,
    warning_info,
)
from qrdoctor.checks.dicomweb.findings import (
    access_finding,
    endpoint_finding,
    includefield_finding,
    limit_refused_finding,
    paging_finding,
    root_finding,
    truncated_finding,
)
from qrdoctor.checks.dicomweb.options import DicomwebOptions
from qrdoctor.checks.dicomweb.parity import ParityObservation
from qrdoctor.checks.shared import SparseFacts
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Stage, Status
from qrdoctor.core.registry import Observation, define
from qrdoctor.dicomweb.auth import decode_jwt

# The usual DICOMweb roots, tried on the base URL's origin when it answers 404 ({AET}: the DIMSE
# target's AE title, or DCM4CHEE).
USUAL_ROOTS = ("/dicom-web/", "/dicomweb/", "/wado-rs/", "/rs/", "/dcm4chee-arc/aets/{AET}/rs/",
               "/orthanc/dicom-web/")
NAMED_FIELD = "00081030"  # StudyDescription: not in PS3.18's default study attributes
LARGE_LIMIT = 1000  # what a client asking for "everything at once" sends
MAX_PAGE = 100


class QidoObservation(Observation):
    base_url: str
    credentials: str | None = None  # how we authenticated ("HTTP Basic as user X", "a bearer token")
    credentials_problem: str | None = None
    jwt: dict[str, Any] | None = None
    now: float = 0.0  # wall clock when observed (for a token's expiry)
    probe: WebAnswer | None = None  # studies?limit=1 at the configured base URL
    roots: list[WebAnswer] = []  # the usual roots tried after a 404
    root: str | None = None  # the base URL the other requests went to
    anonymous: WebAnswer | None = None  # the same request without credentials, when they were accepted
    unlimited: WebAnswer | None = None
    large_limit: WebAnswer | None = None
    page1: WebAnswer | None = None
    page2: WebAnswer | None = None
    beyond: WebAnswer | None = None
    parts: list[WebAnswer] = []
    includefield: WebAnswer | None = None
    includefield_named: WebAnswer | None = None  # includefield=StudyDescription
    pn_encoded: WebAnswer | None = None  # the prefix probe with the wildcard sent as %2A
    pn_probe: str | None = None
    pn_same: WebAnswer | None = None
    pn_other: WebAnswer | None = None
    series: WebAnswer | None = None
    parity: ParityObservation | None = None
    exchanges: list[dict[str, Any]] = []


class QidoFacts(SparseFacts):
    base_url: str | None = None
    root: str | None = None
    roots_tried: list[dict[str, Any]] | None = None
    auth: dict[str, Any] | None = None
    studies: int | None = None
    series: int | None = None
    limit_honoured: bool | None = None
    large_limit: dict[str, Any] | None = None
    cap: int | None = None
    truncated: bool | None = None
    truncation_proof: list[str] | None = None
    warning: dict[str, Any] | None = None
    paging: dict[str, Any] | None = None
    includefield: dict[str, Any] | None = None
    pn: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    requests: list[dict[str, Any]] | None = None


CODES = ("dicomweb-unreachable", "dicomweb-tls-failed", "dicomweb-not-dicomweb", "dicomweb-wrong-root",
         "dicomweb-auth-required", "dicomweb-auth-rejected", "dicomweb-forbidden", "dicomweb-server-error",
         "dicomweb-truncated", "dicomweb-paging-ignored", "dicomweb-limit-refused",
         "dicomweb-includefield-ignored", "dicomweb-parity")

chk = define(
    "dicomweb.qido", stage=Stage.DICOMWEB, title="QIDO-RS queries",
    observation=QidoObservation, facts=QidoFacts, options=DicomwebOptions, codes=CODES,
    budget=8.0, peer_associations=1, after=("association.models",), enabled_by="dicomweb",
)


# -- observe ------------------------------------------------------------------------------------


def _usual_roots(ctx: Context, base: str) -> list[str]:
    aet = ctx.target.called_ae if ctx.target.dimse and ctx.target.called_ae else "DCM4CHEE"
    here = origin_of(base)
    out = []
    for root in USUAL_ROOTS:
        url = here + root.replace("{AET}", aet)
        if url.rstrip("/") != base.rstrip("/") and url not in out:
            out.append(url)
    return out


@chk.observe
def observe(ctx: Context) -> QidoObservation:
    opts = ctx.option(DicomwebOptions)
    base = opts.dicomweb or ""
    creds, problem = options_credentials(opts)
    obs = QidoObservation(base_url=base, credentials=creds.describe() if creds else None,
                          credentials_problem=problem, now=time.time())
    if problem:
        return obs
    if creds is not None and creds.token:
        claims = decode_jwt(creds.token)
        obs.jwt = claims.as_dict() if claims is not None else None
    web = client(ctx, base, creds)
    try:
        ctx.progress("QIDO-RS: studies?limit=1")
        obs.probe = record(ctx, web.get("studies", {"limit": 1}, accept="application/dicom+json"),
                           "studies?limit=1", credentials_sent=creds is not None)
        root = base if _usable(obs.probe) or obs.probe.status not in (404,) else None
        if obs.probe.status == 404:
            for url in _usual_roots(ctx, base):
                ctx.raise_if_cancelled()
                ans = record(ctx, web.get(url + "studies", {"limit": 1}, accept="application/dicom+json"),
                             f"{url}studies?limit=1")
                obs.roots.append(ans)
                if _usable(ans):
                    root = url
                    break
        obs.root = root
        first = obs.roots[-1] if obs.roots and root and root != base else obs.probe
        if root is None or not _usable(first) and first.status not in (400, 413):
            return _finish(obs, web)
        if creds is not None:
            with client(ctx, root, None) as anon:
                obs.anonymous = record(ctx, anon.get(root + "studies", {"limit": 1},
                                                     accept="application/dicom+json"), "studies?limit=1 (no credentials)")
            web.exchanges.extend(anon.exchanges)
        _queries(ctx, web, root, obs)
    finally:
        web.close()
    obs.parity = parity.observe(ctx, obs.unlimited, obs.pn_probe)
    return _finish(obs, web)


def _finish(obs: QidoObservation, web: Any) -> QidoObservation:
    obs.exchanges = [e.as_dict() for e in web.exchanges]
    return obs


def _usable(ans: WebAnswer | None) -> bool:
    return ans is not None and ans.status in (200, 204) and ans.dicom_json


def _get(ctx: Context, web: Any, root: str, what: str, params: list[tuple[str, Any]],
         unique: str | None = None) -> WebAnswer:
    """One QIDO-RS request: ``params`` encoded by the client, or (none given) the query of
    ``what`` sent as written."""
    ctx.raise_if_cancelled()
    ctx.progress(f"QIDO-RS: {what}")
    path = what if not params else what.partition("?")[0]
    kw = {"unique": unique} if unique else {}
    return record(ctx, web.get(root + path, params or None, accept="application/dicom+json"), what,
                  credentials_sent=web.credentials is not None, **kw)


def _queries(ctx: Context, web: Any, root: str, obs: QidoObservation) -> None:
    obs.unlimited = un = _get(ctx, web, root, "studies", [])
    if not _usable(un):
        return
    n = un.rows or 0
    obs.large_limit = _get(ctx, web, root, f"studies?limit={LARGE_LIMIT}", [("limit", LARGE_LIMIT)])
    page = max(1, min(n, MAX_PAGE))
    if n >= 2:
        # pages of half the list; a server refusing that limit (400) is asked smaller pages
        for p in dict.fromkeys((max(1, min(n // 2, MAX_PAGE)), 10, 2)):
            if p > n // 2 and p != 1:
                continue
            obs.page1 = _get(ctx, web, root, f"studies?limit={p}&offset=0", [("limit", p), ("offset", 0)])
            if obs.page1.status not in (400, 413):
                obs.page2 = _get(ctx, web, root, f"studies?limit={p}&offset={p}", [("limit", p), ("offset", p)])
                page = min(page, p) if _usable(obs.page1) else page
                break
    if n >= 1:
        page = page if obs.page1 is None or _usable(obs.page1) else n
        obs.beyond = _get(ctx, web, root, f"studies?limit={page}&offset={n}", [("limit", page), ("offset", n)])
        for _half, value in _date_parts(un.dates):
            obs.parts.append(_get(ctx, web, root, f"studies?StudyDate={value}", [("StudyDate", value)]))
        obs.includefield = _get(ctx, web, root, "studies?limit=1&includefield=all",
                                [("limit", 1), ("includefield", "all")])
        obs.includefield_named = _get(ctx, web, root, f"studies?limit=1&includefield={NAMED_FIELD}",
                                      [("limit", 1), ("includefield", NAMED_FIELD)])
        probe = _pn_probe(un.names)
        if probe:
            # the wildcard as viewers send it (a bare '*'); '%2A' is not the same character to
            # every server (RFC 3986 2.2), so that form is recorded apart
            obs.pn_probe = probe
            other = probe.lower() if probe != probe.lower() else probe.upper()
            obs.pn_same = _get(ctx, web, root, f"studies?PatientName={probe}*", [])
            obs.pn_other = _get(ctx, web, root, f"studies?PatientName={other}*", [])
            obs.pn_encoded = _get(ctx, web, root, f"studies?PatientName={probe}%2A", [])
        uid = next((u for u in un.uids if u), None)
        if uid:
            obs.series = _get(ctx, web, root, f"studies/{uid}/series", [], unique=SERIES_UID)


def _date_parts(dates: list[str]) -> list[tuple[str, str]]:
    """Two disjoint open StudyDate ranges split at the median of the dates seen."""
    days = sorted({d for d in dates if len(d) == 8 and d.isdigit()})
    if len(days) < 2:
        return []
    mid = days[(len(days) - 1) // 2]
    try:
        after = (dt.datetime.strptime(mid, "%Y%m%d") + dt.timedelta(days=1)).strftime("%Y%m%d")
    except ValueError:
        return []
    return [("before", f"-{mid}"), ("after", f"{after}-")]


def _pn_probe(names: list[str]) -> str | None:
    """A family name from the answer with letters whose case can be changed."""
    for name in names:
        family = name.split("^", 1)[0].strip()
        if len(family) >= 2 and family.isascii() and family.isalpha() and family.lower() != family.upper():
            return family
    return None


# -- conclude -----------------------------------------------------------------------------------


@chk.conclude
def conclude(obs: QidoObservation, s: Situation) -> Outcome:
    facts = QidoFacts(base_url=obs.base_url, root=obs.root, requests=obs.exchanges)
    findings: list[Finding] = []
    if obs.credentials_problem:  # a local problem (the token file went away): not the PACS's
        return Outcome(summary="could not read the DICOMweb credentials", facts=facts,
                       status=Status.ERROR, reason=obs.credentials_problem)
    probe = obs.probe
    assert probe is not None
    if obs.roots:
        facts.roots_tried = [{"url": a.url, "status": a.status, "dicom_json": a.dicom_json} for a in obs.roots]
    auth = _auth_facts(obs)
    facts.auth = auth
    if probe.error:
        return _stop(facts, endpoint_finding(s, obs.base_url, probe))
    if probe.status == 404:
        findings.append(root_finding(s, obs.base_url, obs.root, probe, obs.roots))
        if obs.root is None:
            return _stop(facts, findings[0])
    answered = obs.roots[-1] if obs.root and obs.root != obs.base_url else probe
    url = obs.root or obs.base_url
    if answered.status in (401, 403):
        return _stop(facts, access_finding(s, url, answered, auth), findings)
    if answered.status is not None and (answered.status >= 500 or answered.status in (200, 204)) \
            and not _usable(answered):
        return _stop(facts, endpoint_finding(s, url, answered), findings)
    un = obs.unlimited
    if un is not None and un.status in (400, 413):  # a broad query refused by size
        return _stop(facts, limit_refused_finding(s, url, un, limit=None), findings)
    if un is None or not _usable(un):
        failed = un if un is not None else answered
        return _stop(facts, endpoint_finding(s, url, failed), findings)
    n = un.rows or 0
    facts.studies = n
    facts.limit_honoured = None if answered.status in (400, 413) else (answered.rows or 0) <= 1
    if answered.status in (400, 413):
        findings.append(limit_refused_finding(s, url, answered, limit=1))
    if obs.large_limit is not None:
        facts.large_limit = {"limit": LARGE_LIMIT, "status": obs.large_limit.status, "rows": obs.large_limit.rows}
        if obs.large_limit.status in (400, 413):
            findings.append(limit_refused_finding(s, obs.root or obs.base_url, obs.large_limit, limit=LARGE_LIMIT))
    facts.warning = warning_info(un.warnings)
    paging = _paging(obs)
    facts.paging = paging or None
    if paging.get("offset_ignored"):
        findings.append(paging_finding(s, obs.root or obs.base_url, paging, obs.page1, obs.page2))
    proof = _truncation(obs, n, facts.warning)
    facts.truncated = bool(proof)
    facts.truncation_proof = proof or None
    facts.cap = n if proof else None
    if proof:
        findings.append(truncated_finding(s, obs.root or obs.base_url, n, proof, facts.warning, paging))
    facts.includefield = _includefield(obs)
    if facts.includefield and facts.includefield.get("ignored"):
        findings.append(includefield_finding(s, obs.root or obs.base_url, facts.includefield))
    facts.pn = _pn(obs)
    if obs.series is not None:
        facts.series = obs.series.rows
    par, par_findings = parity.conclude(s, obs.parity, obs.unlimited, facts.cap, facts.pn,
                                        obs.root or obs.base_url, [obs.includefield, obs.includefield_named])
    facts.parity = par
    findings.extend(par_findings)
    summary = f"{n} studies over QIDO-RS at {obs.root or obs.base_url}"
    if proof:
        summary += f"; answers capped at {n}"
    return Outcome(summary=summary, findings=findings, facts=facts)


def _stop(facts: QidoFacts, finding: Finding, before: list[Finding] | None = None) -> Outcome:
    found = [*(before or []), finding] if finding not in (before or []) else list(before or [])
    return Outcome(summary=finding.summary, findings=found, facts=facts)


def _auth_facts(obs: QidoObservation) -> dict[str, Any]:
    probe = obs.probe
    answered = obs.roots[-1] if obs.root and obs.roots and obs.root != obs.base_url else probe
    status = answered.status if answered else None
    sent = obs.credentials is not None
    challenge = challenge_info(answered.challenges if answered else [])
    if obs.anonymous is not None and challenge is None:
        challenge = challenge_info(obs.anonymous.challenges)
    if status == 401:
        outcome = "rejected" if sent else "required"
    elif status == 403:
        outcome = "forbidden"
    elif status is not None and 200 <= status < 300:
        if not sent:
            outcome = "none-needed"
        elif obs.anonymous is not None and obs.anonymous.status in (200, 204):
            outcome = "accepted-not-needed"
        else:
            outcome = "accepted"
    else:
        outcome = "unknown"
    out: dict[str, Any] = {"outcome": outcome, "credentials": obs.credentials,
                           "scheme": challenge.get("scheme") if challenge else None,
                           "realm": challenge.get("realm") if challenge else None}
    if challenge:
        out["challenge"] = challenge
    if obs.jwt is not None:
        out["jwt"] = obs.jwt
        exp = obs.jwt.get("exp")
        out["token_expired"] = isinstance(exp, int) and obs.now >= exp
    return out


def _ids(ans: WebAnswer | None) -> list[str]:
    return [u for u in (ans.uids if ans else []) if u]


def _paging(obs: QidoObservation) -> dict[str, Any]:
    p1, p2 = obs.page1, obs.page2
    if p1 is None or p2 is None:
        return {}
    out: dict[str, Any] = {"page1": {"status": p1.status, "rows": p1.rows},
                           "page2": {"status": p2.status, "rows": p2.rows}}
    a, b = _ids(p1), _ids(p2)
    out["disjoint"] = not set(a) & set(b)
    out["offset_ignored"] = bool(a) and a == b
    if obs.beyond is not None:
        out["beyond_end"] = {"request": obs.beyond.what, "status": obs.beyond.status, "rows": obs.beyond.rows}
    return out


def _truncation(obs: QidoObservation, n: int, warning: dict[str, Any] | None) -> list[str]:
    """What proves the unlimited answer was cut (empty: nothing does)."""
    proof = []
    if warning and warning.get("more_results"):
        extra = warning.get("additional")
        proof.append("the server's Warning header says "
                     + (f"{extra} more results exist" if extra is not None else "more results exist"))
    seen = set(_ids(obs.unlimited))
    beyond = obs.beyond
    if beyond is not None and beyond.rows and set(_ids(beyond)) - seen:
        proof.append(f"a page at offset {n} (past the {n} studies of the unlimited answer) held "
                     f"{len(set(_ids(beyond)) - seen)} other studies")
    total = sum(p.rows or 0 for p in obs.parts)
    if len(obs.parts) == 2 and all(_usable(p) for p in obs.parts) and total > n:
        proof.append(f"two disjoint StudyDate ranges ({obs.parts[0].what.split('=', 1)[1]} and "
                     f"{obs.parts[1].what.split('=', 1)[1]}) matched {obs.parts[0].rows} + "
                     f"{obs.parts[1].rows} = {total} studies, more than the {n} of the unlimited answer")
    return proof


def _includefield(obs: QidoObservation) -> dict[str, Any] | None:
    inc, default, named = obs.includefield, obs.unlimited, obs.includefield_named
    if inc is None or not _usable(inc) or not inc.rows or default is None or not default.rows:
        return None
    extra = sorted(set(inc.tags) - set(default.tags))
    out: dict[str, Any] = {"default_attributes": len(default.tags), "with_all": len(inc.tags),
                           "added": extra[:50], "ignored": not extra}
    if named is not None and _usable(named) and named.rows:
        out["named"] = NAMED_FIELD
        out["named_returned"] = NAMED_FIELD in named.tags
    return out


def _pn(obs: QidoObservation) -> dict[str, Any] | None:
    if obs.pn_probe is None or obs.pn_same is None or obs.pn_other is None:
        return None
    same, other = obs.pn_same.rows, obs.pn_other.rows
    out: dict[str, Any] = {"probe": f"{obs.pn_probe}*", "same_case": same, "other_case": other,
                           "trailing_wildcard": bool(same)}
    if obs.pn_encoded is not None:
        out["percent_encoded_wildcard"] = obs.pn_encoded.rows
    out["case_sensitive"] = (not other) if same else None
    return out
