"""The one place where qrdoctor touches pynetdicom's private internals.

Everything here reaches below pynetdicom's public API, for a reason given next to each use. The
rest of qrdoctor calls these functions and never names a private pynetdicom (or CPython) module
or attribute itself. :data:`REQUIRED` lists every private name relied on, and
``tests/test_compat.py`` fails, naming the attribute, when an installed pynetdicom lacks one:
pyproject.toml pins pynetdicom to the releases this was tested with.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# _config: see keep_identifiers_out_of_logs() and pass_context_to_threads() for why
from pynetdicom import _config
from pynetdicom._validators import validate_ae as _pynetdicom_validate_ae
from pynetdicom.association import Association

# (module, attribute, what we use it for): checked by tests/test_compat.py
REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("pynetdicom._validators", "validate_ae", "AE title validation (validate_ae)"),
    ("pynetdicom._config", "LOG_REQUEST_IDENTIFIERS", "identifiers kept out of logs"),
    ("pynetdicom._config", "LOG_RESPONSE_IDENTIFIERS", "identifiers kept out of logs"),
    ("pynetdicom._config", "PASS_CONTEXTVARS", "per-check transcripts"),
    ("pynetdicom.association.Association", "_serve_request", "the simulator's Q/R dispatch"),
)
# Instance attributes (set in Association.__init__), checked on a fresh Association
REQUIRED_ON_ASSOCIATION: tuple[str, ...] = ("_is_paused", "_sent_release")


def validate_ae(value: str) -> tuple[bool, str]:
    """(valid, why not) for an AE title, by pynetdicom's own rule.

    Why the private function: pynetdicom applies exactly this rule when it builds our
    association requests; validating the user's titles with the same function means a title we
    accept is never refused later, deep inside a check, with a less helpful message.
    """
    return _pynetdicom_validate_ae(value)


def keep_identifiers_out_of_logs() -> None:
    """Stop pynetdicom from writing C-FIND/C-MOVE/C-GET identifiers into its log.

    Why: identifiers carry patient data, and pretty-printing every one costs time on a large
    C-FIND. pynetdicom documents these switches in its ``_config`` module only.
    """
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


def pass_context_to_threads() -> None:
    """Run pynetdicom's association and DUL threads in a copy of their creator's context.

    Why: a check's protocol transcript is attributed through a ``contextvars.ContextVar``
    (qrdoctor.core.transcript); with this switch the threads an association starts inherit the
    check's transcript, so their log lines land in that check's transcript and no other.
    pynetdicom documents the switch in its ``_config`` module only.
    """
    _config.PASS_CONTEXTVARS = True


def route_requests(assoc: Association, serve: Callable[[Any, int], bool]) -> None:
    """Offer every DIMSE request this acceptor association receives to ``serve`` first.

    ``serve(message, context_id)`` returns True when it answered the request itself; otherwise
    pynetdicom's own handling applies. Why the private hook: pynetdicom's Q/R service classes
    decide the final statuses and sub-operation counts of C-MOVE/C-GET themselves (and answer
    an unreachable destination with 0xA801), which would hide exactly the behaviours the
    simulator reproduces; ``Association._serve_request`` is where pynetdicom dispatches a
    request to its service classes, and it has no public replacement.
    """
    original = assoc._serve_request

    def dispatch(msg: Any, context_id: int) -> None:
        # After we sent an A-RELEASE-RQ pynetdicom ignores further requests (with a warning):
        # leave them to it.
        if not assoc._sent_release and _served(assoc, serve, msg, context_id):
            return
        original(msg, context_id)

    assoc._serve_request = dispatch  # type: ignore[method-assign]


def _served(assoc: Association, serve: Callable[[Any, int], bool], msg: Any, context_id: int) -> bool:
    with _reactor_paused(assoc):
        return serve(msg, context_id)


@contextmanager
def _reactor_paused(assoc: Association) -> Iterator[None]:
    """Mark the association's reactor paused while our handler runs.

    Why: pynetdicom's ``send_c_store`` (used for C-GET sub-operations on the same association)
    waits until the reactor says it is paused; pynetdicom's own ``_serve_request`` sets the same
    flag around its service classes, and there is no public way to set it.
    """
    assoc._is_paused = True
    try:
        yield
    finally:
        assoc._is_paused = False


def missing() -> list[str]:
    """The private names compat relies on that the installed pynetdicom lacks."""
    gone = []
    for module, attribute, use in REQUIRED:
        owner = lookup(module)
        if owner is None or not hasattr(owner, attribute):
            gone.append(f"{module}.{attribute} ({use})")
    assoc = _fresh_association()
    for attribute in REQUIRED_ON_ASSOCIATION:
        if not hasattr(assoc, attribute):
            gone.append(f"pynetdicom.association.Association().{attribute} (the simulator's Q/R dispatch)")
    return gone


def lookup(dotted: str) -> Any:
    """A module, or a class inside a module, by its dotted name (None if absent)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            owner = getattr(owner, name, None)
        return owner
    return None


def _fresh_association() -> Association:
    from pynetdicom import AE

    return Association(AE(), "requestor")  # not started: no thread, no socket
