"""qrdoctor fleet: an inventory of many simulated PACSes (mixed quirks, dead ports), run at once."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

import pytest

from qrdoctor.cli import main
from qrdoctor.monitor.fleetreport import FLEET_SCHEMA
from qrdoctor.monitor.inventory import InventoryError, load_inventory

from support.ports import LOOPBACK, free_port, free_ports


def _node(name: str, ae: str, port: int, **extra: object) -> str:
    key = name if name.replace("-", "").replace("_", "").isalnum() else json.dumps(name)
    lines = [f"[profiles.{key}]", f'called_ae = "{ae}"', f'host = "{LOOPBACK}"', f"port = {port}"]
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def silent_listener():
    """A port that accepts TCP connections and never says a word (a hung PACS)."""
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def _interval(node: dict) -> tuple[float, float]:
    start = dt.datetime.fromisoformat(node["started_at"]).timestamp()
    return start, start + node["duration_s"]


def test_a_mixed_fleet_gives_each_node_its_own_result_in_bounded_time(sim_pacs_factory, silent_listener, tmp_path,
                                                                      capsys):
    # Given six simulated PACSes (one capping C-FIND, one checking the called AE title) and two
    # dead ports; A and B share a store port (so they must never retrieve at once), C has its own
    shared, own = free_ports(2)
    a = sim_pacs_factory(ae_title="PACSA", studies=12, destinations={"QRDOCTOR": (LOOPBACK, shared)})
    b = sim_pacs_factory(ae_title="PACSB", studies=12, seed=2,
                         destinations={"QRDOCTOR": (LOOPBACK, shared)})
    c = sim_pacs_factory(ae_title="PACSC", studies=12, seed=3, destinations={"QRDOCTOR": (LOOPBACK, own)})
    strict = sim_pacs_factory(ae_title="STRICT", quirks="check-called-ae")
    mod1 = sim_pacs_factory(ae_title="CT1", studies=5)
    mod2 = sim_pacs_factory(ae_title="MR1", studies=12, quirks="silent-cap=5")
    closed = free_port()
    full = ["association.echo", "find.levels", "retrieve.move"]
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(
        '[groups.modalities]\nchecks = ["association.echo", "find"]\n\n'
        + _node("A", "PACSA", a.port, store_port=shared, listen_host=LOOPBACK, checks=full, group="pacs")
        + _node("B", "PACSB", b.port, store_port=shared, listen_host=LOOPBACK, checks=full, group="pacs")
        + _node("C", "PACSC", c.port, store_port=own, listen_host=LOOPBACK, checks=full, group="pacs")
        + _node("wrong-title", "NOTSTRICT", strict.port, group="modalities")
        + _node("CT1", "CT1", mod1.port, group="modalities")
        + _node("MR 1", "MR1", mod2.port, group="modalities")
        + _node("closed", "GONE", closed, group="modalities")
        + _node("hung", "HUNG", silent_listener, group="modalities"))
    out = tmp_path / "fleet.json"
    # When the fleet runs, four nodes at once, one second per network step
    t0 = time.monotonic()
    code = main(["fleet", str(inventory), "--parallel", "4", "--timeout", "1", "--json", str(out),
                 "--out-dir", str(tmp_path / "nodes"), "--md", str(tmp_path / "fleet.md"),
                 "--html", str(tmp_path / "fleet.html")])
    took = time.monotonic() - t0
    doc = json.loads(out.read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    # Then each node has its own result, and the fleet's exit status is the worst node's
    assert doc["schema"] == FLEET_SCHEMA
    assert code == 1 and doc["exit_code"] == 1
    assert [n["name"] for n in doc["nodes"]] == ["A", "B", "C", "wrong-title", "CT1", "MR 1", "closed", "hung"]
    assert nodes["A"]["status"] == nodes["B"]["status"] == nodes["C"]["status"] == "pass"
    assert nodes["MR 1"]["status"] == "warn" and nodes["MR 1"]["first_problem"]["code"] == "match-limit"
    assert nodes["wrong-title"]["status"] == "fail"
    assert nodes["wrong-title"]["first_problem"]["code"] == "called-ae-rejected"
    assert nodes["CT1"]["status"] == "pass" and nodes["CT1"]["echo_rtt_ms"] > 0
    assert nodes["closed"]["first_problem"]["code"] == "tcp-refused"
    assert nodes["hung"]["first_problem"]["code"] == "peer-silent"
    assert nodes["hung"]["timed_out"] is False  # its checks' own deadlines ended it
    assert doc["summary"] == {"pass": 4, "warn": 1, "fail": 3, "error": 0}
    # the groups' and nodes' selections were run, nothing more
    ct1 = json.loads((out.parent / nodes["CT1"]["reports"]["json"]).read_text())
    assert {c["id"] for c in ct1["checks"]} >= {"association.echo", "find.levels", "find.match_limit"}
    assert not any(c["id"].startswith(("retrieve.", "match.")) for c in ct1["checks"])
    # bounded: the hung node did not hold up the others
    assert took < 45
    # no store-port cross-talk: A and B (same port) never ran at once, and each received exactly
    # the objects its own PACS sent
    a_run, b_run = _interval(nodes["A"]), _interval(nodes["B"])
    assert a_run[1] <= b_run[0] + 0.01 or b_run[1] <= a_run[0] + 0.01
    for name in ("A", "B", "C"):
        report = json.loads((out.parent / nodes[name]["reports"]["json"]).read_text())
        move = next(c for c in report["checks"] if c["id"] == "retrieve.move")
        assert move["status"] == "pass", (name, move["summary"])
        assert move["facts"]["received"] == move["facts"]["completed"] == move["facts"]["expected"] > 0
        assert {o["calling_ae"] for o in move["facts"]["inbound"]} == {f"PACS{name}"}
    # the terminal table has a row per node, and progress went to stderr
    captured = capsys.readouterr()
    assert all(name in captured.out for name in nodes)
    assert captured.err.count("/8]") == 8
    # the pages link every node's report
    page = (tmp_path / "fleet.html").read_text()
    assert page.count('href="nodes/') == 2 * 8 and page.count("<tr>") == 9
    assert "MR 1" in (tmp_path / "fleet.md").read_text()


def test_a_hanging_node_is_ended_at_its_deadline(silent_listener, tmp_path):
    # Given a node that accepts connections and never answers, and a short node deadline
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(_node("hung", "HUNG", silent_listener, checks=["association.echo"]))
    out = tmp_path / "fleet.json"
    t0 = time.monotonic()
    code = main(["fleet", str(inventory), "--timeout", "30", "--node-deadline", "2", "--json", str(out)])
    # Then the node is ended at its deadline and reported, not waited for
    assert time.monotonic() - t0 < 12
    node = json.loads(out.read_text())["nodes"][0]
    assert code != 0 and node["status"] in ("fail", "error")
    assert node["duration_s"] < 10


def test_inventory_refuses_an_unknown_key_naming_the_node(tmp_path):
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(_node("CT1", "CT1", 104, grup="modalities"))
    with pytest.raises(InventoryError, match=r"node 'CT1': unknown key grup"):
        load_inventory(inventory)


def test_inventory_validates_nodes_as_profiles(tmp_path, capsys):
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(_node("CT1", "CT1", 104) + _node("MR1", "MR1", 104, store_port=True))
    assert main(["fleet", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert "node 'MR1'" in err and "store_port" in err and len(err.strip().splitlines()) == 1


def test_inventory_checks_groups_and_families(tmp_path):
    inventory = tmp_path / "fleet.toml"
    inventory.write_text('[groups.mod]\nchecks = ["association.echo", "find"]\n\n'
                         + _node("CT1", "CT1", 104, group="mod")
                         + _node("PACS", "PACS", 104, group="other")
                         + _node("MR1", "MR1", 104, group="mod", checks=["match.wildcards"]))
    nodes = {n.name: n for n in load_inventory(inventory)}
    assert nodes["CT1"].checks == ["association.echo", "find.levels", "find.conformance", "find.return_keys",
                                   "find.match_limit"]
    assert nodes["PACS"].checks is None and nodes["PACS"].retrieves
    assert nodes["MR1"].checks == ["match.wildcards"] and not nodes["MR1"].retrieves
    (tmp_path / "bad.toml").write_text('[groups.mod]\nchecks = ["echo"]\n' + _node("CT1", "CT1", 104))
    with pytest.raises(InventoryError, match="group 'mod': unknown check 'echo'"):
        load_inventory(tmp_path / "bad.toml")


def test_fleet_nagios_prints_one_line_for_the_fleet(sim_pacs_factory, tmp_path, capsys):
    from support.nagios_grammar import parse_plugin_output

    ok = sim_pacs_factory(ae_title="OK1")
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(_node("ok", "OK1", ok.port, checks=["association.echo"])
                         + _node("closed", "GONE", free_port(), checks=["association.echo"]))
    code = main(["fleet", str(inventory), "--timeout", "1", "--nagios", "--critical", "5"])
    out = capsys.readouterr().out
    parsed = parse_plugin_output(out)
    assert code == 2 and parsed.state == "CRITICAL"
    assert "2 nodes: 1 OK, 1 CRITICAL; CRITICAL: closed" in parsed.text
    assert parsed.perfdata["nodes_ok"].value == 1 and parsed.perfdata["nodes_critical"].value == 1
    assert parsed.perfdata["echo_rtt_max"].uom == "s" and parsed.perfdata["echo_rtt_max"].crit == "5"


def test_sigterm_cancels_the_fleet_and_still_writes_its_report(silent_listener, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    # Given a fleet whose one node accepts connections and never answers (a long timeout)
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(_node("hung", "HUNG", silent_listener, checks=["association.echo"]))
    out = tmp_path / "fleet.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qrdoctor", "fleet", str(inventory), "--timeout", "60",
                             "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # When it is sent SIGTERM while the node waits
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith(b"qrdoctor fleet: 1 node")
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Then it stops soon, says why, exits 143 as `check` does, and the fleet JSON was written
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 143, err.decode(errors="replace")
    assert b"interrupted by SIGTERM" in err
    node = json.loads(out.read_text())["nodes"][0]
    assert node["name"] == "hung" and node["status"] != "pass"
