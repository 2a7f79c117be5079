"""Stage 1: can we reach the PACS at all? Our own TCP probe, with the errno classified.

pynetdicom catches connection errors and only logs them, so refused, timed out and DNS
failures would be indistinguishable if it did the connecting.
"""

from __future__ import annotations

import errno
import socket
import time

from qrdoctor.context import Context, Outcome
from qrdoctor.model import Severity, Stage
from qrdoctor.registry import check

UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def _attempt(family: int, sockaddr: tuple, timeout: float) -> dict:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    t0 = time.monotonic()
    try:
        sock.connect(sockaddr)
    except TimeoutError:
        return {"address": sockaddr[0], "result": "timeout", "after_ms": round((time.monotonic() - t0) * 1000, 1)}
    except ConnectionRefusedError as exc:
        return {"address": sockaddr[0], "result": "refused", "errno": exc.errno,
                "after_ms": round((time.monotonic() - t0) * 1000, 1)}
    except OSError as exc:
        kind = "unreachable" if exc.errno in UNREACHABLE_ERRNOS else "error"
        return {"address": sockaddr[0], "result": kind, "errno": exc.errno,
                "error": errno.errorcode.get(exc.errno or 0, str(exc)), "detail": str(exc),
                "after_ms": round((time.monotonic() - t0) * 1000, 1)}
    else:
        connect_ms = round((time.monotonic() - t0) * 1000, 2)
        local = sock.getsockname()[0]
        return {"address": sockaddr[0], "result": "connected", "connect_ms": connect_ms, "local_address": local}
    finally:
        sock.close()


@check(
    "network.tcp",
    stage=Stage.NETWORK,
    title="TCP reachability",
    codes=("dns-unresolved", "tcp-refused", "tcp-timeout", "tcp-unreachable"),
    budget=3.0,
)
def tcp(ctx: Context) -> Outcome:
    t = ctx.target
    where = f"{t.host} port {t.port}"
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Outcome(
            summary=f"the name {t.host} does not resolve",
            facts={"result": "unresolved", "connect_ms": None, "dns_error": str(exc)},
            findings=[ctx.finding(
                "dns-unresolved", Severity.FAIL,
                f"The PACS host name {t.host!r} could not be resolved to an address ({exc.strerror or exc}).",
                f"Check the spelling of {t.host!r}, or use the PACS's IP address instead of its name. "
                "If the name is right, ask your IT team to add it to DNS (or to this computer's hosts file).",
                host=t.host, error=str(exc), errno=exc.errno,
            )],
        )
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    attempts: list[dict] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if any(a["address"] == sockaddr[0] for a in attempts):
            continue
        ctx.raise_if_cancelled()
        attempt = _attempt(family, sockaddr, ctx.timeout())
        attempts.append(attempt)
        if attempt["result"] == "connected":
            break
    last = attempts[-1]
    facts = {"result": last["result"], "connect_ms": last.get("connect_ms"), "addresses": addresses,
             "attempts": attempts}
    if last["result"] == "connected":
        facts["local_address"] = last["local_address"]
        facts["peer_address"] = last["address"]
        return Outcome(summary=f"connected to {last['address']}:{t.port} in {last['connect_ms']} ms", facts=facts)

    # Prefer the most telling failure when several addresses were tried.
    order = ["refused", "unreachable", "timeout", "error"]
    worst = min(attempts, key=lambda a: order.index(a["result"]))
    facts["result"] = "unreachable" if worst["result"] == "error" else worst["result"]
    evidence = {"host": t.host, "port": t.port, "attempts": attempts}
    if worst["result"] == "refused":
        f = ctx.finding(
            "tcp-refused", Severity.FAIL,
            f"{where} refused the connection: the computer answered, but nothing is listening on that port.",
            f"Check the port number with the PACS administrator (the DICOM port is often 104, 11112 or 4242) "
            f"and that the PACS's DICOM service is running on {t.host}. If the port is right, a firewall "
            "on the PACS host may be rejecting connections from this computer.",
            **evidence,
        )
        summary = f"connection refused at {where}"
    elif worst["result"] == "timeout":
        f = ctx.finding(
            "tcp-timeout", Severity.FAIL,
            f"Nothing answered at {where} within {t.timeout:g} s: the connection attempt was silently dropped.",
            f"A firewall between this computer and {t.host} is most likely dropping DICOM traffic, or the "
            f"address is wrong. Ask the network team to allow TCP from this computer to {t.host} port "
            f"{t.port}, and confirm the PACS's IP address with its administrator.",
            **evidence,
        )
        summary = f"no answer from {where} (filtered or wrong address)"
    else:
        f = ctx.finding(
            "tcp-unreachable", Severity.FAIL,
            f"{t.host} cannot be reached from this computer ({worst.get('detail') or worst.get('error')}).",
            "There is no network route to the PACS: check this computer's network connection, VPN and "
            f"gateway, and that {t.host} is the PACS's correct address.",
            **evidence,
        )
        summary = f"{t.host} unreachable"
    return Outcome(summary=summary, facts=facts, findings=[f])
