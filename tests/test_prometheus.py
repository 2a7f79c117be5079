"""--prometheus: the text exposition format, parsed back with prometheus_client's own parser;
serve-metrics; and the monitoring outputs from a run against a real Orthanc."""

from __future__ import annotations

import http.client
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qrdoctor.cli import main
from qrdoctor.monitor.serve import make_server

from support.nagios_grammar import parse_plugin_output


def _samples(path):
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    return families, {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for f in families.values() for s in f.samples}


def _series(samples, name, **labels):
    return [v for (n, lab), v in samples.items() if n == name and all(dict(lab).get(k) == w for k, w in labels.items())]


def test_a_check_run_parses_back_with_every_label(sim_pacs_factory, tmp_path, capsys):
    pacs = sim_pacs_factory(ae_title="CAPPED", studies=30, quirks="silent-cap=7")
    prom = tmp_path / "qrdoctor.prom"
    before = time.time()
    code = main(["check", f"CAPPED@127.0.0.1:{pacs.port}", "--only", "find.match_limit", "--timeout", "3",
                 "--prometheus", str(prom)])
    assert code == 0  # a warning is not a failure
    families, samples = _samples(prom)
    assert {"qrdoctor_check_status", "qrdoctor_echo_rtt_seconds", "qrdoctor_find_seconds", "qrdoctor_match_limit",
            "qrdoctor_last_run_timestamp_seconds", "qrdoctor_node_exit_code"} <= set(families)
    node = {"node": f"CAPPED@127.0.0.1:{pacs.port}", "ae": "CAPPED", "host": "127.0.0.1", "port": str(pacs.port)}
    # one series per check and status, exactly one of them 1
    for check in ("network.tcp", "association.echo", "find.levels", "find.match_limit"):
        values = {dict(lab)["status"]: v for (n, lab), v in samples.items()
                  if n == "qrdoctor_check_status" and dict(lab)["check"] == check}
        assert set(values) == {"pass", "warn", "fail", "error", "skipped"} and sum(values.values()) == 1
    assert _series(samples, "qrdoctor_check_status", check="find.match_limit", status="warn", **node) == [1.0]
    assert _series(samples, "qrdoctor_match_limit", check="find.match_limit", **node) == [7.0]
    rtt = _series(samples, "qrdoctor_echo_rtt_seconds", check="association.echo", **node)
    assert len(rtt) == 1 and 0 < rtt[0] < 3
    assert _series(samples, "qrdoctor_find_seconds", model="study_root", level="STUDY", **node)
    assert before - 2 <= _series(samples, "qrdoctor_last_run_timestamp_seconds", **node)[0] <= time.time()
    assert _series(samples, "qrdoctor_node_exit_code", **node) == [0.0]


def test_a_fleet_writes_one_set_of_series_per_node(sim_pacs_factory, tmp_path, capsys):
    a, b = sim_pacs_factory(ae_title="AAA"), sim_pacs_factory(ae_title="BBB")
    inventory = tmp_path / "fleet.toml"
    inventory.write_text("".join(f'[profiles.{n}]\ncalled_ae = "{n}"\nhost = "127.0.0.1"\nport = {p}\n'
                                 'checks = ["association.echo"]\n' for n, p in (("AAA", a.port), ("BBB", b.port))))
    prom = tmp_path / "fleet.prom"
    assert main(["fleet", str(inventory), "--prometheus", str(prom)]) == 0
    _, samples = _samples(prom)
    assert {dict(lab)["node"] for (n, lab), _ in samples.items() if n == "qrdoctor_echo_rtt_seconds"} == {"AAA", "BBB"}


def test_serve_metrics_serves_the_file_and_nothing_else(tmp_path):
    prom = tmp_path / "m.prom"
    prom.write_text("# TYPE x gauge\nx 1.0\n")
    server = make_server(str(prom), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        conn.request("GET", "/metrics")
        rsp = conn.getresponse()
        assert rsp.status == 200 and rsp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        assert rsp.read() == prom.read_bytes()
        conn.request("GET", "/../m.prom")
        rsp = conn.getresponse()
        rsp.read()
        assert rsp.status == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.realpeer
def test_nagios_and_prometheus_from_a_real_orthanc(orthanc, tmp_path, capsys):
    prom = tmp_path / "orthanc.prom"
    target = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    code = main(["check", target, "--only", "find.match_limit", "--nagios", "--warning", "1", "--critical", "5",
                 "--prometheus", str(prom)])
    out = capsys.readouterr().out
    parsed = parse_plugin_output(out)
    assert parsed.state == "OK" and code == 0, out
    assert parsed.perfdata["echo_rtt"].uom == "s" and parsed.perfdata["find_study_STUDY"].crit == "5"
    _, samples = _samples(prom)
    assert _series(samples, "qrdoctor_check_status", check="association.echo", status="pass", ae=orthanc.aet) == [1.0]
    assert _series(samples, "qrdoctor_echo_rtt_seconds", node=target)
    # the lines quoted in the closing note
    print("NAGIOS:", out.splitlines()[0])
    print("PROM:", *[line for line in prom.read_text().splitlines()
                     if line.startswith(("qrdoctor_echo_rtt", "qrdoctor_find_seconds{", "qrdoctor_last_run"))
                     or 'status="pass"' in line and "association.echo" in line], sep="\n")
