"""`qrdoctor replay BUNDLE.zip`: a support bundle made against a real Orthanc is concluded again
by the installed qrdoctor, with the network blocked, and reaches the live run's verdicts."""

from __future__ import annotations

import json
import socket
import zipfile

import pytest

from qrdoctor.cli import main

pytestmark = pytest.mark.realpeer


def _verdicts(report: dict) -> dict[str, tuple[str, list[str]]]:
    return {c["id"]: (c["status"], sorted({f["code"] for f in c["findings"]})) for c in report["checks"]}


def _block_network(monkeypatch) -> list[str]:
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[1:] if args else kwargs))
        raise OSError("network blocked by the test")

    for name in ("connect", "connect_ex", "bind", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_replay_of_an_orthanc_bundle_matches_the_live_run_offline(orthanc, tmp_path, monkeypatch, capsys):
    # Given a live run against Orthanc that wrote a support bundle and the JSON report
    bundle, live_json = tmp_path / "ticket.zip", tmp_path / "live.json"
    rc_live = main(["check", orthanc.target, "--store-port", str(orthanc.store_port),
                    "--listen-host", "127.0.0.1", "--timeout", "5",
                    "--bundle", str(bundle), "--json", str(live_json)])
    live = json.loads(live_json.read_text())
    with zipfile.ZipFile(bundle) as zf:
        observations = json.loads(zf.read("observations.json"))
    assert observations["schema"] == "qrdoctor.observations/1"
    ran = [c["id"] for c in live["checks"] if c["status"] != "skipped"]
    assert ran, "the live run checked nothing"
    unrecorded = [cid for cid in ran if observations["checks"].get(cid) is None]
    assert not unrecorded, f"checks that ran but left no replayable observation: {unrecorded}"

    # When it is replayed with every socket operation refused
    attempts = _block_network(monkeypatch)
    replayed_json = tmp_path / "replayed.json"
    rc_replay = main(["replay", str(bundle), "--json", str(replayed_json)])

    # Then no connection was attempted and every check reaches the live status and codes
    assert attempts == []
    replayed = json.loads(replayed_json.read_text())
    assert _verdicts(replayed) == _verdicts(live)
    assert rc_replay == rc_live
    assert "no network is used" in capsys.readouterr().out


def test_replay_refuses_a_file_that_is_not_a_bundle(tmp_path, capsys):
    # Given a zip without report.json and observations.json
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    # When it is replayed, Then it is a usage error naming what is missing
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a replayable qrdoctor bundle" in err and "observations.json" in err
