"""Free TCP ports on loopback: the one place tests (and scripts) get a port to listen on."""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"

# A system Orthanc (4242, 8042) or a PACS (104, 11112) may really listen on these.
_RESERVED = frozenset({4242, 8042, 104, 11112})

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets stay bound until all ports are chosen, so the ports are distinct; ports already
    handed out by this process are never returned again (the kernel may otherwise reuse one
    that a not-yet-started server was given).
    """
    with _lock:
        socks: list[socket.socket] = []
        ports: list[int] = []
        try:
            attempts = 0
            while len(ports) < n:
                attempts += 1
                if attempts > 50 * n + 50:
                    raise RuntimeError("could not find free loopback ports")
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((LOOPBACK, 0))
                socks.append(s)
                port = s.getsockname()[1]
                if port in _handed_out or port in _RESERVED:
                    continue
                ports.append(port)
        finally:
            for s in socks:
                s.close()
        _handed_out.update(ports)
        return ports


def free_port() -> int:
    """One TCP port that is free on 127.0.0.1 (nothing listens there until someone binds it)."""
    return free_ports(1)[0]
