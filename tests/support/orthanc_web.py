"""Orthanc with its DICOMweb plugin for the dicomweb tests: optionally with HTTP Basic
authentication (``AuthenticationEnabled`` + ``RegisteredUsers``), in which case the harness's own
REST calls (readiness, uploads) authenticate too.
"""

from __future__ import annotations

import base64
import http.client
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset

from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer
from support.ports import LOOPBACK, free_port
from support.tools import DICOMWEB_PLUGIN, ORTHANC_BIN, require_tool

WEB_USER = "radiology"
WEB_PASSWORD = "orthanc-web-secret-7731"


class WebOrthanc(OrthancServer):
    """An Orthanc whose REST requests from the harness carry HTTP Basic credentials when
    ``auth`` is set."""

    def __init__(self, *args: Any, auth: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.auth = auth

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0,
                content_type: str | None = None) -> Any:
        if self.auth is None:
            return super().request(method, path, body, timeout=timeout, content_type=content_type)
        conn = _AuthConnection(LOOPBACK, self.http_port, timeout=timeout, auth=self.auth)
        try:
            return self._request_on(conn, method, path, body, content_type)
        finally:
            conn.close()

    def upload(self, items: Any) -> list[dict]:
        if self.auth is None:
            return super().upload(items)
        return [self.request("POST", "/instances", _bytes(i), content_type="application/dicom") for i in items]


class _AuthConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, auth: tuple[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._authorization = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()

    def request(self, method, url, body=None, headers=None, **kw):  # type: ignore[override]
        headers = dict(headers or {})
        headers["Authorization"] = self._authorization
        return super().request(method, url, body=body, headers=headers, **kw)


def _bytes(item: Any) -> bytes:
    from support.corpus import dataset_bytes

    return dataset_bytes(item) if isinstance(item, Dataset) else bytes(item)


def start_web_orthanc(datasets: Sequence[Dataset], config: Mapping[str, Any] | None = None, *,
                      aet: str = "ORTHANC", auth: bool = False) -> WebOrthanc:
    """A started Orthanc with the DICOMweb plugin and ``datasets`` loaded (stop it with kill())."""
    require_tool(ORTHANC_BIN)
    require_tool(DICOMWEB_PLUGIN)
    store_port = free_port()
    merged: dict[str, Any] = {**ORTHANC_ALLOW_ALL,
                              "DicomModalities": {"QRDOCTOR": ["QRDOCTOR", LOOPBACK, store_port]}}
    if auth:
        merged.update({"AuthenticationEnabled": True, "RegisteredUsers": {WEB_USER: WEB_PASSWORD}})
    merged.update(config or {})
    server = WebOrthanc(aet=aet, config=merged, dicomweb=True,
                        auth=(WEB_USER, WEB_PASSWORD) if auth else None)
    server.store_port = store_port
    try:
        server.start()
        server.upload(datasets)
    except BaseException:
        server.stop(grace=0)
        raise
    return server
