"""Where qrdoctor ran: versions, operating system and this computer's addresses.

Vendor support asks for these first. Nothing here talks to the network except resolving this
computer's own host name (normally answered from the hosts file), and that is bounded in time.
"""

from __future__ import annotations

import platform
import socket
import threading
from importlib import metadata
from typing import Any

from qrdoctor import __version__
from qrdoctor.core.model import Report
from qrdoctor.reports.view import read_facts

RESOLVE_TIMEOUT_S = 2.0


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _host_addresses(hostname: str) -> list[str]:
    """The addresses this computer's host name resolves to, within a short time limit."""
    found: list[str] = []

    def resolve() -> None:
        try:
            infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
        except OSError:
            return
        found.extend(info[4][0] for info in infos)

    worker = threading.Thread(target=resolve, name="qrdoctor-resolve-self", daemon=True)
    worker.start()
    worker.join(RESOLVE_TIMEOUT_S)
    return list(dict.fromkeys(found))


def environment_info(report: Report | None = None) -> dict[str, Any]:
    """Versions of qrdoctor and its DICOM libraries, Python, the OS, and local addresses.

    With a report, adds the local address our connection to the PACS left from (the
    ``local_address`` fact of ``network.tcp``; behind NAT the PACS sees another address) and the
    address we advertised for retrieves. ``address_seen_by_pacs`` is the same local address
    under its first, misleading name, kept for readers of older bundles.
    """
    hostname = socket.gethostname()
    addresses = _host_addresses(hostname)
    info: dict[str, Any] = {
        "qrdoctor": __version__,
        "pynetdicom": _version("pynetdicom"),
        "pydicom": _version("pydicom"),
        "jinja2": _version("jinja2"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": platform.system(),
        "os_release": platform.release(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": hostname,
        "local_addresses": addresses,
        "local_address": None,
        "address_seen_by_pacs": None,
        "advertised_address": None,
    }
    if report is not None:
        tcp = next((c for c in report.checks if c.id == "network.tcp"), None)
        if tcp is not None:
            local = getattr(read_facts(tcp), "local_address", None)  # absent when TCP failed
            if local:
                info["local_address"] = info["address_seen_by_pacs"] = local
                if local not in addresses:
                    info["local_addresses"] = [*addresses, local]
        info["advertised_address"] = report.target.advertise
    return info
