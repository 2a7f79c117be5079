"""Whom the DICOM layer talks to, and how: a plain value instead of a check's context.

The DICOM layer (qrdoctor/dicom/) never sees a check, a runner or a report. A check builds a
:class:`Peer` from its target, the timeout it may spend on each network step and its cancel
event, and hands it down; everything below works from that alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from qrdoctor.core.target import Target, TLSOptions


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    calling_ae: str
    called_ae: str
    tls: TLSOptions | None = None
    timeout: float = 10.0  # seconds for each network step (connect, each PDU awaited)
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)

    @classmethod
    def of(cls, target: Target, timeout: float, cancel: threading.Event | None = None) -> Peer:
        return cls(host=target.host, port=target.port, calling_ae=target.calling_ae,
                   called_ae=target.called_ae, tls=target.tls, timeout=timeout,
                   cancel=cancel if cancel is not None else threading.Event())
