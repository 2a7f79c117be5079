"""Client helpers: pynetdicom C-ECHO / C-FIND / C-MOVE SCUs and DCMTK's ``findscu``.

The pynetdicom helpers are minimal independent clients for checking what a server holds and
does; ``findscu`` is a second, independent implementation (DCMTK) of the same C-FIND.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from support.ports import LOOPBACK
from support.tools import FINDSCU_BIN, peer_env, require_tool


def set_nodelay(assoc: Any) -> None:
    """Disable Nagle on an established pynetdicom association's socket (best effort).

    pynetdicom sends a C-STORE's command and data set as separate writes; with Nagle on, the
    second waits for the peer's delayed ACK (~40 ms per instance).
    """
    try:
        sock = assoc.dul.socket.socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def c_echo(port: int, aet: str, calling_ae: str = "QRDOCTOR", host: str = LOOPBACK) -> int | None:
    """C-ECHO with pynetdicom; the status (0 on success) or None if no association."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=aet)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return getattr(status, "Status", None)
    finally:
        assoc.release()


def _identifier(level: str, keys: Mapping[str, Any] | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in (keys or {}).items():
        setattr(ds, keyword, value)
    return ds


_DEFAULT_KEYS = {
    "PATIENT": {"PatientID": "", "PatientName": ""},
    "STUDY": {"StudyInstanceUID": ""},
    "SERIES": {"SeriesInstanceUID": ""},
    "IMAGE": {"SOPInstanceUID": ""},
}


def c_find_with_status(
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    host: str = LOOPBACK,
) -> tuple[list[Dataset], int | None]:
    """C-FIND with pynetdicom: (pending identifiers, final status or None if the peer sent
    none). Raises RuntimeError if the association is not accepted."""
    level = level.upper()
    sop = (StudyRootQueryRetrieveInformationModelFind if model == "study"
           else PatientRootQueryRetrieveInformationModelFind)
    query = _identifier(level, keys if keys is not None else _DEFAULT_KEYS[level])
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
    ae.add_requested_context(sop)
    assoc = ae.associate(host, port, ae_title=aet)
    if not assoc.is_established:
        raise RuntimeError(f"C-FIND association to {aet}@{host}:{port} was not accepted")
    results: list[Dataset] = []
    final: int | None = None
    try:
        set_nodelay(assoc)
        for status, identifier in assoc.send_c_find(query, sop):
            code = getattr(status, "Status", None)
            if code in (0xFF00, 0xFF01):
                results.append(identifier)
            elif code is not None:
                final = int(code)
    finally:
        if assoc.is_established:
            assoc.release()
    return results, final


def c_find(
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    host: str = LOOPBACK,
) -> list[Dataset]:
    """C-FIND with pynetdicom; the pending identifiers. Raises RuntimeError if the association
    fails or the final status is not Success (0x0000) -- note that Orthanc 1.10 ends a query cut
    by ``LimitFindResults``/``LimitFindInstances`` with 0xFE00 (use
    :func:`c_find_with_status`)."""
    results, final = c_find_with_status(port, aet, level, keys, model=model,
                                        calling_ae=calling_ae, host=host)
    if final != 0x0000:
        status = ("no final status (association aborted or timed out)" if final is None
                  else f"final status 0x{final:04X}")
        raise RuntimeError(f"C-FIND to {aet}@{host}:{port} ended with {status}")
    return results


def _findscu_key_args(level: str, keys: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    args = ["-k", f"QueryRetrieveLevel={level}"]
    if keys is None:
        keys = _DEFAULT_KEYS[level]
    if isinstance(keys, Mapping):
        items = [k if v in (None, "") else f"{k}={v}" for k, v in keys.items()]
    else:
        items = list(keys)
    for item in items:
        args += ["-k", item]
    return args


def findscu(
    host: str,
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    timeout: float = 60.0,
) -> list[Dataset]:
    """Run DCMTK's ``findscu`` and return the response identifiers it received.

    ``keys`` is a mapping ``{"PatientName": "SMITH*", "StudyDate": ""}`` or a list of findscu
    ``-k`` strings (``"PatientName=SMITH*"``); an empty value asks for the key as a return key.
    ``model`` is ``study``, ``patient`` or ``patient-study`` (``-S``, ``-P``, ``-O``).
    Responses are written with ``--extract`` into a temp dir and read back with pydicom.
    """
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError("tests only talk to loopback")
    binary = require_tool(FINDSCU_BIN)
    model_flag = {"study": "-S", "patient": "-P", "patient-study": "-O"}[model]
    level = level.upper()
    with tempfile.TemporaryDirectory(prefix="qrdoctor-findscu-") as out:
        cmd = [binary, "-v", model_flag, "-aet", calling_ae, "-aec", aet, "-to", "10",
               "-ta", "10", "-td", str(int(timeout)), "-X", "-od", out,
               *_findscu_key_args(level, keys), host, str(port)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10,
                              stdin=subprocess.DEVNULL, env=peer_env())
        if proc.returncode != 0:
            raise RuntimeError(
                f"findscu exited {proc.returncode}: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
            )
        files = sorted(Path(out).glob("rsp*.dcm"))
        return [pydicom.dcmread(f, force=True) for f in files]


def findscu_count(
    host: str,
    port: int,
    aet: str,
    level: str = "STUDY",
    keys: Mapping[str, Any] | Sequence[str] | None = None,
    **kwargs: Any,
) -> int:
    """How many responses DCMTK's ``findscu`` gets for this query (see :func:`findscu`)."""
    return len(findscu(host, port, aet, level, keys, **kwargs))



def c_move(
    port: int,
    aet: str,
    destination: str,
    level: str = "SERIES",
    keys: Mapping[str, Any] | None = None,
    *,
    model: str = "study",
    calling_ae: str = "QRDOCTOR",
    host: str = LOOPBACK,
) -> dict[str, Any]:
    """C-MOVE with pynetdicom; returns the final ``status`` and the sub-operation counts
    (``completed``, ``failed``, ``warning``) of the last response, or ``status`` None when the
    association failed."""
    sop = (StudyRootQueryRetrieveInformationModelMove if model == "study"
           else PatientRootQueryRetrieveInformationModelMove)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
    ae.add_requested_context(sop)
    assoc = ae.associate(host, port, ae_title=aet)
    result: dict[str, Any] = {"status": None, "completed": None, "failed": None,
                              "warning": None}
    if not assoc.is_established:
        return result
    try:
        for status, _ident in assoc.send_c_move(_identifier(level.upper(), keys),
                                                     destination, sop):
            if status is None or "Status" not in status:
                continue
            result["status"] = int(status.Status)
            for key, tag in (("completed", "NumberOfCompletedSuboperations"),
                             ("failed", "NumberOfFailedSuboperations"),
                             ("warning", "NumberOfWarningSuboperations")):
                if tag in status:
                    result[key] = int(status[tag].value)
    finally:
        if assoc.is_established:
            assoc.release()
    return result
