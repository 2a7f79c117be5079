"""Every check's conclusion, replayed from observations recorded on real servers and on the
simulator's quirks (tests/observations/<source>/<check>.json), with no network at all.

A fixture records what the live run concluded; today's code must conclude the same status and
codes from the same observation. Regenerate a fixture only when a conclusion changes on
purpose (scripts/record_observations.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrdoctor.core.replay import replay_fixture


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("replay tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


FIXTURES = sorted((Path(__file__).parent / "observations").glob("*/*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name}/{p.stem}" for p in FIXTURES])
def test_recorded_observation_concludes_as_recorded(path, no_network):
    # Given an observation recorded from a live run
    doc = json.loads(path.read_text(encoding="utf-8"))
    # When today's conclude step reads it, with the network blocked
    result = replay_fixture(doc)
    # Then it reaches the recorded status, codes and fact names
    assert result.status.value == doc["expect"]["status"], result.summary
    assert sorted({f.code for f in result.findings}) == doc["expect"]["codes"]
    assert sorted(result.facts) == doc["expect"]["facts"]
