"""What the DICOMweb checks share: the client built from the options, each HTTP answer recorded
as plain data (without credentials), DICOM JSON read leniently, and the findings of an endpoint
that cannot be used at all (unreachable, TLS, not DICOMweb, authentication, server error)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qrdoctor.checks.dicomweb.options import DicomwebOptions
from qrdoctor.core.context import Context
from qrdoctor.core.registry import Observation
from qrdoctor.core.transcript import wire_log
from qrdoctor.dicomweb.auth import Credentials, CredentialsError, parse_challenges
from qrdoctor.dicomweb.http import WebClient, WebResponse
from qrdoctor.dicomweb.warning import parse_warning

DICOM_JSON = "application/dicom+json"
MAX_ROWS = 100_000
BODY_PREVIEW = 200  # characters of a body that is not DICOM JSON kept as evidence

STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
STUDY_DATE = "00080020"
PHI_TAGS = {"00100010": "name", "00100020": "id", "00100030": "birth_date", "00080050": "accession",
            "00080090": "name"}


class WebAnswer(Observation):
    """One QIDO-RS request and what came back, as recorded data (no credentials)."""

    what: str  # the request, e.g. "studies?limit=1"
    url: str
    status: int | None = None
    reason: str = ""
    content_type: str | None = None
    elapsed_ms: int = 0
    error: str | None = None  # WebError kind
    error_detail: str | None = None
    credentials_sent: bool = False
    challenges: list[str] = []  # WWW-Authenticate values
    warnings: list[str] = []  # Warning values
    rows: int | None = None  # datasets in a DICOM JSON answer; None when it was not one
    json_problem: str | None = None
    uids: list[str] = []  # the level's unique key of each row
    tags: list[str] = []  # every attribute tag present in at least one row
    dates: list[str] = []  # StudyDate of each row (studies)
    names: list[str] = []  # PatientName (Alphabetic) of each row (studies)
    preview: str = ""  # the start of a body that is not DICOM JSON
    truncated: bool = False

    @property
    def dicom_json(self) -> bool:
        return self.rows is not None

    @property
    def empty_ok(self) -> bool:
        return self.status == 204 or (self.status == 200 and self.rows == 0)

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request": self.what, "url": self.url, "status": self.status}
        for key in ("reason", "content_type", "error", "error_detail", "json_problem"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.rows is not None:
            out["rows"] = self.rows
        if self.challenges:
            out["www_authenticate"] = self.challenges
        if self.warnings:
            out["warning"] = self.warnings
        if self.preview:
            out["body_start"] = self.preview
        out["elapsed_ms"] = self.elapsed_ms
        return out


def first_value(row: dict, tag: str) -> str:
    elem = row.get(tag)
    if not isinstance(elem, dict):
        return ""
    values = elem.get("Value")
    if not isinstance(values, list) or not values:
        return ""
    v = values[0]
    if isinstance(v, dict):  # PN: {"Alphabetic": ...}
        v = v.get("Alphabetic", "")
    return str(v) if isinstance(v, str | int | float) else ""


def read_rows(body: bytes) -> tuple[list[dict] | None, str | None]:
    """DICOM JSON datasets (PS3.18 F.2): the rows, or (None, what is wrong)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "the body is not JSON"
    if not isinstance(data, list):
        return None, "the JSON is not an array of datasets"
    if len(data) > MAX_ROWS:
        data = data[:MAX_ROWS]
    if not all(isinstance(r, dict) for r in data):
        return None, "an element of the JSON array is not a dataset (object)"
    if any(not all(isinstance(k, str) and len(k) == 8 for k in r) for r in data):
        return None, "a dataset has keys that are not DICOM tags (8 hex digits)"
    return data, None


def record(ctx: Context | None, r: WebResponse, what: str, unique: str | None = STUDY_UID,
           credentials_sent: bool = False) -> WebAnswer:
    """A response as recorded data (and a line of the check's transcript); patient values in it
    are noted for redaction."""
    wire_log.debug("HTTP GET %s -> %s", r.url, _outcome(r))
    ans = WebAnswer(what=what, url=r.url, status=r.status, reason=r.reason or "", content_type=r.content_type,
                    elapsed_ms=round(r.elapsed_s * 1000), credentials_sent=credentials_sent,
                    error=r.error.kind if r.error else None, error_detail=r.error.detail if r.error else None,
                    challenges=r.headers_all("www-authenticate")[:8], warnings=r.headers_all("warning")[:8],
                    truncated=r.body_truncated)
    if r.status == 204:
        return ans.model_copy(update={"rows": 0})
    if r.status is None or r.error is not None and r.error.kind != "too-large":
        return ans
    rows, problem = read_rows(r.body) if r.body.strip() else (None, "the body is empty")
    if rows is None:
        text = r.body[:BODY_PREVIEW * 4].decode("utf-8", "replace")
        return ans.model_copy(update={"json_problem": problem, "preview": " ".join(text.split())[:BODY_PREVIEW]})
    if ctx is not None:
        for row in rows:
            for tag, kind in PHI_TAGS.items():
                v = first_value(row, tag)
                if v:
                    ctx.note_phi(kind, v)
    tags = sorted({t for row in rows for t in row})
    update: dict[str, Any] = {"rows": len(rows), "tags": tags}
    if unique:
        update["uids"] = [first_value(row, unique) for row in rows]
    if unique == STUDY_UID:
        update["dates"] = [first_value(row, STUDY_DATE) for row in rows]
        update["names"] = [first_value(row, PATIENT_NAME) for row in rows]
    return ans.model_copy(update=update)


def _outcome(r: WebResponse) -> str:
    if r.error is not None and r.status is None:
        return f"no answer ({r.error.kind}: {r.error.detail})"
    parts = [f"{r.status} {r.reason}".strip(), r.content_type or "no Content-Type", f"{len(r.body)} bytes",
             f"{round(r.elapsed_s * 1000)} ms"]
    parts += [f"WWW-Authenticate: {v[:200]}" for v in r.headers_all("www-authenticate")[:2]]
    parts += [f"Warning: {v[:200]}" for v in r.headers_all("warning")[:2]]
    if r.error is not None:
        parts.append(f"{r.error.kind}: {r.error.detail}")
    return ", ".join(parts)


def options_credentials(opts: DicomwebOptions) -> tuple[Credentials | None, str | None]:
    """The credentials, or (None, why they cannot be read: never the secret)."""
    try:
        return opts.credentials(), None
    except CredentialsError as exc:
        return None, str(exc)


def client(ctx: Context, base: str, credentials: Credentials | None) -> WebClient:
    opts = ctx.option(DicomwebOptions)
    return WebClient(base, credentials=credentials, ca_file=opts.dicomweb_ca, timeout=ctx.timeout())


def origin_of(url: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "", "", ""))


def challenge_info(values: list[str]) -> dict[str, Any] | None:
    """The first challenge of WWW-Authenticate: scheme and realm (and Bearer's error)."""
    for value in values:
        for ch in parse_challenges(value):
            info: dict[str, Any] = {"scheme": ch.scheme, "realm": ch.realm}
            for key in ("error", "error_description", "scope"):
                if key in ch.params:
                    info[key] = ch.params[key]
            return info
    return None


def warning_info(values: list[str]) -> dict[str, Any] | None:
    for w in parse_warning(values):
        return {"code": w.code, "agent": w.agent, "text": w.text, "additional": w.additional,
                "more_results": w.mentions_additional_results}
    return None
