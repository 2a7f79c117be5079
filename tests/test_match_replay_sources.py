"""The matching stage's replay fixtures cover what they should: each check as recorded on real
Orthanc and dcmqrscp, and every matching finding code from some live peer (the simulator's
quirks or a fault-injection peer), replayed here with today's conclusions and no network.

Record them with ``python scripts/record_observations.py match``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrdoctor.checks.shared import ASSOCIATION_CODES
from qrdoctor.core.registry import get_check
from qrdoctor.core.replay import replay_fixture

MATCH = ("match.wildcards", "match.ranges", "match.lists")
FIXTURES = Path(__file__).parent / "observations"


def recorded(check_id: str) -> dict[str, dict]:
    """The fixtures of one check, by source."""
    return {p.parent.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(FIXTURES.glob(f"*/{check_id}.json"))}


def replayed(check_id: str, source: str):
    return replay_fixture(recorded(check_id)[source])


@pytest.mark.parametrize("check_id", MATCH)
def test_each_matching_check_is_recorded_on_both_real_servers(check_id):
    assert {"orthanc", "dcmqrscp"} <= set(recorded(check_id))


def test_every_matching_finding_is_seen_in_a_recorded_run(no_network):
    # Association failures are covered by unit tests: no live peer fails only the matching stage
    declared = {code for c in MATCH for code in get_check(c).codes} - set(ASSOCIATION_CODES)
    seen = {f.code for c in MATCH for doc in recorded(c).values() for f in replay_fixture(doc).findings}
    assert declared <= seen, f"no fixture shows {sorted(declared - seen)}"


def test_orthanc_and_dcmqrscp_differ_where_they_really_differ(no_network):
    # Orthanc's default CaseSensitivePN is false; dcmqrscp compares names case sensitively
    assert replayed("match.wildcards", "orthanc").facts["case_sensitive"] is False
    assert replayed("match.wildcards", "dcmqrscp").facts["case_sensitive"] is True
    # both match wildcards on the whole value and support UID lists...
    for source in ("orthanc", "dcmqrscp"):
        assert replayed("match.wildcards", source).facts["scope"] == "whole_value"
        assert replayed("match.lists", source).facts["ui_list"] == "supported"
        ranges = replayed("match.ranges", source).facts
        assert ranges["closed_range"] and ranges["open_start"] and ranges["open_end"]
    # ...and dcmqrscp takes a CS list such as CT\MR literally
    assert replayed("match.lists", "orthanc").facts["cs_list"] == "supported"
    assert replayed("match.lists", "dcmqrscp").facts["cs_list"] == "no_match"


def test_recorded_observations_carry_no_patient_names():
    # Probes are recorded by name and count: the names they were built from never are
    for check_id in MATCH:
        for source, doc in recorded(check_id).items():
            text = json.dumps(doc["observation"], ensure_ascii=False)
            assert "SMITH" not in text.upper() and "MÜLLER" not in text.upper(), source


@pytest.fixture
def no_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("replay tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
