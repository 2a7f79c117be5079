"""Where the real servers and DCMTK clients are installed, and what happens when one is missing.

A missing tool skips the test on a developer machine but *fails* it in CI (``CI=true``):
real-peer tests must never silently skip there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
# DCMTK tools are always called by absolute path: pynetdicom installs console scripts with the
# same names (echoscu, findscu, movescu, getscu, storescu, storescp), and a Python environment's
# bin directory (or a pyenv shim) usually comes first on PATH.
DCMTK_BIN_DIR = "/usr/bin"
DCMQRSCP_BIN = f"{DCMTK_BIN_DIR}/dcmqrscp"
FINDSCU_BIN = f"{DCMTK_BIN_DIR}/findscu"

INSTALL_HINT = (
    "install Debian's packages: apt-get install orthanc orthanc-dicomweb dcmtk "
    "(scripts/test.sh does this)"
)

# DCMTK 3.6.7 (dcmqrscp, findscu, movescu, storescu ... and Orthanc, which links DCMTK) leaves
# Nagle's algorithm on unless the environment variable TCP_NODELAY=1 is set. Its PDU writes
# (header, then body) then meet the peer's delayed ACK: ~40 ms per message, ~90 ms per C-STORE.
# Every process the harness starts gets TCP_NODELAY=1; it changes timing only, not behaviour.
PEER_ENV = {"TCP_NODELAY": "1"}


def peer_env() -> dict[str, str]:
    """The environment for a real peer or DCMTK client: ours plus :data:`PEER_ENV`."""
    env = dict(os.environ)
    env.update(PEER_ENV)
    return env


def in_ci() -> bool:
    """True when the environment variable ``CI`` says this is a CI run."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(message: str) -> NoReturn:
    """Give up on the current test because something is not installed: skip, or fail in CI."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _installed(path_or_name: str) -> str | None:
    if os.sep in path_or_name:
        p = Path(path_or_name)
        if p.is_file() and (p.suffix == ".so" or os.access(p, os.X_OK)):
            return str(p)
        return None
    for d in (DCMTK_BIN_DIR, "/usr/sbin"):
        cand = Path(d) / path_or_name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which(path_or_name)


def require_tool(path_or_name: str) -> str:
    """Return the path of a binary (or plugin file) the test needs.

    A bare name is looked up in /usr/bin and /usr/sbin first (Debian's DCMTK/Orthanc, not a
    same-named pynetdicom console script), then on PATH. When it is missing the test is
    skipped -- except in CI, where it fails (see :func:`missing`).
    """
    found = _installed(path_or_name)
    if found is None:
        missing(f"required tool {path_or_name!r} is not installed; {INSTALL_HINT}")
    return found
