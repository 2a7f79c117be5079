"""qrdoctor.dicom.compat: the one adapter to pynetdicom's private internals, and its guard rails.

When an upgrade of pynetdicom removes or renames something compat relies on, these tests fail
and name the attribute; when code elsewhere starts reaching into private internals again, the
last test names the file and line.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO

from qrdoctor.dicom import compat

ROOT = Path(__file__).resolve().parent.parent
PRIVATE_USE = re.compile(
    r"pynetdicom\._|from pynetdicom import _|ssl\._ssl|\._serve_request|_is_paused|_accepted_cx|\._servers")


@pytest.mark.parametrize(("module", "attribute", "use"), compat.REQUIRED,
                         ids=[f"{m}.{a}" for m, a, _ in compat.REQUIRED])
def test_pynetdicom_still_has(module: str, attribute: str, use: str) -> None:
    owner = compat.lookup(module)
    assert owner is not None, f"{module} is gone from the installed pynetdicom (needed for {use})"
    assert hasattr(owner, attribute), (
        f"{module}.{attribute} is gone from the installed pynetdicom (needed for {use}); "
        "adapt qrdoctor/dicom/compat.py")


@pytest.mark.parametrize("attribute", compat.REQUIRED_ON_ASSOCIATION)
def test_pynetdicom_associations_still_have(attribute: str) -> None:
    assoc = Association(AE(), "requestor")
    assert hasattr(assoc, attribute), (
        f"pynetdicom's Association no longer sets {attribute} (the simulator's Q/R dispatch "
        "needs it); adapt qrdoctor/dicom/compat.py")


def test_nothing_is_missing() -> None:
    assert compat.missing() == []


def test_the_installed_pynetdicom_is_in_the_tested_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (spec,) = [Requirement(d) for d in project["dependencies"] if d.startswith("pynetdicom")]
    installed = importlib.metadata.version("pynetdicom")
    assert spec.specifier.contains(installed), f"pynetdicom {installed} is outside {spec}"
    assert spec.specifier.contains("3.0.4") and not spec.specifier.contains("3.1.0")


@pytest.mark.parametrize(("title", "ok", "why"), [
    ("QRDOCTOR", True, ""),
    ("  PADDED  ", True, ""),
    ("A" * 17, False, "must not exceed 16 characters"),
    ("MÜLLER", False, "must only contain ASCII characters"),
    ("BACK\\SLASH", False, "must not contain control characters or backslashes"),
    ("TAB\tHERE", False, "must not contain control characters or backslashes"),
])
def test_ae_titles_are_validated_by_pynetdicoms_rule(title: str, ok: bool, why: str) -> None:
    assert compat.validate_ae(title) == (ok, why)


def test_requests_are_offered_to_us_first_with_the_reactor_paused() -> None:
    assoc = Association(AE(), "requestor")
    seen: list[tuple[object, int, bool]] = []

    def serve(msg: object, context_id: int) -> bool:
        seen.append((msg, context_id, assoc._is_paused))
        return True

    compat.route_requests(assoc, serve)
    assoc._serve_request("a request", 3)
    assert seen == [("a request", 3, True)]
    assert assoc._is_paused is False


def test_requests_we_decline_go_to_pynetdicom(caplog: pytest.LogCaptureFixture) -> None:
    assoc = Association(AE(), "requestor")
    compat.route_requests(assoc, lambda msg, context_id: False)
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        assoc._serve_request(C_ECHO(), 1)  # not a valid request: pynetdicom says so and drops it
    assert "Received unexpected C-ECHO service message" in caplog.text
    assert assoc._is_paused is False


def test_a_response_the_reactor_takes_from_a_waiting_sender_goes_back_to_it(caplog) -> None:
    # pynetdicom issue #875: a send_*() method cleared the reactor checkpoint and waits on the
    # DIMSE queue, but the reactor had already passed the checkpoint and took the response.
    compat.keep_responses_for_waiting_senders()
    assoc = Association(AE(), "requestor")
    response, later = C_ECHO(), C_ECHO()
    response.MessageIDBeingRespondedTo, response.Status = 1, 0x0000
    assoc.dimse.msg_queue.put((1, later))
    assoc._reactor_checkpoint.clear()
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        assoc._serve_request(response, 1)
    # Then it is back at the front of the queue, for the sender, and nothing was dropped
    assert assoc.dimse.get_msg(block=False) == (1, response)
    assert assoc.dimse.get_msg(block=False) == (1, later)
    assert "unexpected" not in caplog.text
    # ... while with no sender waiting, pynetdicom handles it as before
    assoc._reactor_checkpoint.set()
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        assoc._serve_request(response, 1)
    assert "Received unexpected C-ECHO service message" in caplog.text


def test_only_compat_touches_private_internals() -> None:
    offenders = []
    for folder in ("qrdoctor", "checks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "compat.py" and path.parent.name == "dicom":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PRIVATE_USE.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "private pynetdicom/CPython internals outside qrdoctor/dicom/compat.py"
