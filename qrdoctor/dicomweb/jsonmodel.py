"""Reading the DICOM JSON model (PS3.18 Annex F) that QIDO-RS and WADO-RS metadata answer with.

:func:`parse_dataset_list` never raises: it returns the rows that are well-formed DICOM JSON
datasets and, when anything is off, one plain-words problem (the first found). Helpers read
values without caring whether a row came from QIDO or from ``/metadata``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydicom.datadict import tag_for_keyword

MAX_BODY = 64 * 1024 * 1024
MAX_ROWS = 100_000
MAX_DEPTH = 12  # sequence nesting read by the helpers

_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_VR = re.compile(r"[A-Z]{2}")

Row = dict[str, dict[str, Any]]


def _check_element(tag: str, element: object) -> str | None:
    if not _TAG.fullmatch(tag):
        return f"the key {tag[:40]!r} is not a tag of 8 hexadecimal digits"
    if not isinstance(element, dict):
        return f"the attribute {tag} is not a JSON object"
    vr = element.get("vr")
    if not isinstance(vr, str) or not _VR.fullmatch(vr):
        return f"the attribute {tag} has no valid \"vr\""
    value = element.get("Value")
    if value is not None and not isinstance(value, list):
        return f"the \"Value\" of attribute {tag} is not an array"
    kinds = [k for k in ("Value", "BulkDataURI", "InlineBinary") if k in element]
    if len(kinds) > 1:
        return f"the attribute {tag} has more than one of Value, BulkDataURI, InlineBinary"
    return None


def parse_dataset_list(body: bytes) -> tuple[list[Row], str | None]:
    """``(rows, problem)``: a JSON array of DICOM JSON datasets (QIDO-RS results, WADO-RS
    metadata). ``problem`` names the first defect found. An item that is not an object keyed by
    tags is dropped; a dataset with a defective attribute (a "vr" that is not a VR, a "Value"
    that is not an array) is kept, so callers can tell a defect from an answer that is not
    DICOM JSON at all. An empty body is a problem here; a 204 answer is the caller's to handle
    first."""
    if len(body) > MAX_BODY:
        return [], f"the body is larger than the {MAX_BODY} bytes qrdoctor reads"
    if not body.strip():
        return [], "the body is empty"
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], f"the body is not UTF-8 text (byte {exc.start})"
    try:
        data = json.loads(text)
    except RecursionError:
        return [], "the JSON is nested too deeply to read"
    except ValueError as exc:
        return [], f"the body is not JSON ({str(exc)[:120]})"
    if isinstance(data, dict):
        return [], "the JSON is a single object, not an array of datasets"
    if not isinstance(data, list):
        return [], f"the JSON is a {type(data).__name__}, not an array of datasets"
    rows: list[Row] = []
    problem: str | None = None
    for i, item in enumerate(data):
        if i >= MAX_ROWS:
            problem = problem or f"more than {MAX_ROWS} datasets; the rest was not read"
            break
        if not isinstance(item, dict):
            problem = problem or f"item {i + 1} of the array is not a JSON object"
            continue
        bad = next((p for p in (_check_element(k, v) for k, v in item.items()) if p), None)
        if bad:
            problem = problem or f"dataset {i + 1}: {bad}"
            if not all(isinstance(k, str) and _TAG.fullmatch(k) for k in item):
                continue  # not a dataset at all; one with a defective attribute is still kept
        rows.append({k.upper(): v for k, v in item.items()})
    return rows, problem


def _key(tag: str) -> str:
    if _TAG.fullmatch(tag):
        return tag.upper()
    found = tag_for_keyword(tag)
    if found is None:
        raise KeyError(f"unknown attribute {tag!r}")
    return f"{found:08X}"


def _as_text(v: object) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict):
        alpha = v.get("Alphabetic")
        return alpha if isinstance(alpha, str) else None
    return None


def values(row: Row, tag: str) -> list[str]:
    """Every value of the attribute as text (person names: their Alphabetic group)."""
    element = row.get(_key(tag))
    if not isinstance(element, dict):
        return []
    raw = element.get("Value")
    if not isinstance(raw, list):
        return []
    return [t for t in (_as_text(v) for v in raw) if t is not None]


def value(row: Row, tag: str) -> str | None:
    """The first value of the attribute as text, or None."""
    found = values(row, tag)
    return found[0] if found else None


def person_name(row: Row, tag: str) -> str | None:
    """The Alphabetic group of the first person name."""
    element = row.get(_key(tag))
    raw = element.get("Value") if isinstance(element, dict) else None
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        alpha = raw[0].get("Alphabetic")
        return alpha if isinstance(alpha, str) else None
    return None


def bulk_data_uris(row: Row) -> Iterator[tuple[str, str]]:
    """(tag, BulkDataURI) for every bulk data reference, in sequences too (bounded depth)."""
    def walk(ds: dict[str, Any], depth: int) -> Iterator[tuple[str, str]]:
        if depth > MAX_DEPTH:
            return
        for tag, element in ds.items():
            if not isinstance(element, dict):
                continue
            uri = element.get("BulkDataURI")
            if isinstance(uri, str):
                yield tag, uri
            if element.get("vr") == "SQ" and isinstance(element.get("Value"), list):
                for item in element["Value"]:
                    if isinstance(item, dict):
                        yield from walk(item, depth + 1)
    yield from walk(row, 0)
