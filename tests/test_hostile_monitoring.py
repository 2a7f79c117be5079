"""Hostile input to the monitoring outputs: PACS-controlled text in --nagios and --prometheus,
hostile inventories for ``qrdoctor fleet``, and hostile HTTP clients of ``serve-metrics``.

- Nagios: whatever a summary, a finding or an AE title holds (``|``, line breaks, quotes,
  backslashes, braces, terminal control sequences, undecodable bytes kept as lone surrogates),
  the output is one status line plus one long-text line per problem, parses with the strict
  grammar of :mod:`support.nagios_grammar`, keeps the performance data of a clean run, holds no
  control character and can be written as UTF-8.
- Prometheus: hostile node names, AE titles and hosts parse back (prometheus_client's own
  parser) to the very label values; no sample line is added or broken.
- Inventories: a TOML bomb, a huge file, wrong types, hostile keys -> one line, quickly; 10,000
  nodes load in bounded time.
- serve-metrics: requests that never finish, huge requests and many idle connections end within
  the request time limit, leave no thread behind, and a scrape afterwards is answered.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qrdoctor.cli import main
from qrdoctor.core.model import (
    CheckResult,
    Finding,
    Report,
    Severity,
    Status,
    Summary,
    TargetInfo,
    ToolInfo,
)
from qrdoctor.monitor.inventory import InventoryError, load_inventory
from qrdoctor.monitor.nagios import Thresholds, check_output, fleet_output
from qrdoctor.monitor.serve import make_server

from support.nagios_grammar import parse_plugin_output

HOSTILE = [
    "a | b=1;2;3 'x'=5 | c",
    "line one\nline two\r\nQRDOCTOR OK - forged | fake=1",
    'quote " and back\\slash \\n and {braces} {{x}}',
    "\x1b[2J\x1b]0;title\x07 bell \x00 nul \x9b31m c1",
    "undecodable \udcff\udcfe bytes",
    "\u2028separator\u2029 and \x85 nel and \x0b\x0c",
    "= ' ; , equals",
    "",
]
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _report(text: str, ae: str = "PACS", host: str = "127.0.0.1") -> Report:
    finding = Finding(code="find-refused", severity=Severity.FAIL, summary=f"the PACS said: {text}",
                      explanation="", fix="")
    return Report(
        tool=ToolInfo(version="0"), target=TargetInfo(host=host, port=104, called_ae=ae, calling_ae="QRDOCTOR",
                                                      move_ae="QRDOCTOR"),
        started_at="2026-01-01T00:00:00+00:00", duration_s=1.5, summary=Summary(pass_=1, warn=1, fail=1),
        checks=[CheckResult(id="association.echo", stage="association", title="e", status=Status.PASS,
                            facts={"rtt_ms": 3.0}),
                CheckResult(id="find.levels", stage="query", title="f", status=Status.FAIL, summary=text,
                            findings=[finding]),
                CheckResult(id="find.return_keys", stage="query", title="r", status=Status.WARN,
                            summary=f"warned: {text}", reason=text)])


def _assert_plugin_output(text: str, long_lines: int) -> None:
    assert text.endswith("\n") and text.count("\n") == 1 + long_lines, text
    assert not _CONTROL.search(text), repr(text)
    text.encode("utf-8")  # what sys.stdout must write
    parsed = parse_plugin_output(text)
    assert parsed.text.startswith(("PACS@", "2 nodes")) or parsed.text, text


def test_nagios_keeps_its_grammar_whatever_the_pacs_says():
    clean = check_output(_report("fine"), Thresholds())
    for text in HOSTILE:
        rendered = check_output(_report(text), Thresholds()).render()
        # one status line, one long-text line for each check that did not pass
        _assert_plugin_output(rendered, long_lines=2)
        # the performance data of a clean run, untouched
        assert parse_plugin_output(rendered).perfdata == parse_plugin_output(clean.render()).perfdata


def test_nagios_keeps_its_grammar_with_hostile_node_names_and_ae_titles():
    for text in HOSTILE:
        report = _report(text, ae=f"AE{text}"[:64], host=f"h{text}")
        _assert_plugin_output(check_output(report, Thresholds()).render(), long_lines=2)
        fleet = fleet_output([(f"node {text}", report, None), (f"down {text}", None, f"could not run: {text}")],
                             Thresholds(), 2.0)
        rendered = fleet.render()
        _assert_plugin_output(rendered, long_lines=2)
        assert parse_plugin_output(rendered).perfdata.keys() == {
            "nodes_ok", "nodes_warning", "nodes_critical", "nodes_unknown", "echo_rtt_max", "duration"}


def _label_sets(text: str) -> list[dict[str, str]]:
    return [s.labels for fam in text_string_to_metric_families(text) for s in fam.samples]


def test_prometheus_labels_parse_back_to_the_hostile_values(tmp_path):
    from qrdoctor.monitor.prometheus import write_metrics

    for text in HOSTILE:
        node, ae, host = f"node{text}", f"AE{text}", f"h{text}"
        path = tmp_path / "m.prom"
        write_metrics(str(path), [(node, _report(text, ae=ae, host=host)), ("clean", _report("fine"))])
        exposition = path.read_bytes().decode("utf-8")  # as written (read_text would translate a CR)
        labels = _label_sets(exposition)
        # undecodable bytes (kept by Python as lone surrogates) are written as U+FFFD
        node, ae, host = (re.sub("[\ud800-\udfff]", "\ufffd", x) for x in (node, ae, host))
        hostile = [s for s in labels if s.get("node") == node]
        assert hostile and all(s["ae"] == ae and s["host"] == host for s in hostile)
        # as many series for the hostile node as for the clean one: no line broken or forged
        assert len(hostile) == len([s for s in labels if s.get("node") == "clean"])
        for line in exposition.rstrip("\n").split("\n"):  # the format's only line end
            assert line.startswith(("# HELP qrdoctor_", "# TYPE qrdoctor_", "qrdoctor_")), line


# ---- hostile inventories ------------------------------------------------------------------------


def _inventory_error(tmp_path, text: str | bytes, seconds: float = 5.0) -> str:
    path = tmp_path / "inv.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    t0 = time.monotonic()
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert time.monotonic() - t0 < seconds
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message and len(message) < 600, message
    return message


NODE = '[profiles.A]\ncalled_ae = "PACS"\nhost = "127.0.0.1"\nport = 104\n'


HOSTILE_INVENTORIES = [
    "x = " + "[" * 100_000 + "]" * 100_000,
    "x = " + "{a = " * 50_000 + "1" + "}" * 50_000,
    "profiles = 5",
    "[profiles]\nA = 5",
    NODE + "port = 'abc'",
    '[profiles.A]\ncalled_ae = {a = 1}\nhost = []\nport = 104\n',
    NODE + "checks = 5",
    NODE + "checks = [1, 2]",
    NODE + "group = 5",
    "groups = []\n" + NODE,
    "[groups.g]\nchecks = {a = 1}\n" + NODE,
    NODE + '"key\\nwith a line break" = 1',
    NODE + '"\\u001b[2J" = 1',
    '[groups.g]\n"k\\nk" = 1\n' + NODE,
    '[profiles."name\\nwith a break"]\ncalled_ae = "P"\nhost = "h"\nport = "x"\n',
    b"\xff\xfe not utf-8",
    "a = 1\n" * 10 + "= broken",
]


def test_a_hostile_inventory_is_one_line(tmp_path, capsys):
    for text in HOSTILE_INVENTORIES:
        _inventory_error(tmp_path, text)
    # and so is what `qrdoctor fleet` says of one
    path = tmp_path / "inv.toml"
    path.write_text(NODE + '"bad\\nkey" = 1')
    assert main(["fleet", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "'bad\\nkey'" in err, err


def test_a_huge_inventory_is_refused_before_it_is_read_and_ten_thousand_nodes_load(tmp_path):
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as fh:
        fh.truncate(1024 * 1024 * 1024)  # sparse: no disk used, but a gigabyte to read
    t0 = time.monotonic()
    with pytest.raises(InventoryError, match="too large"):
        load_inventory(huge)
    assert time.monotonic() - t0 < 2
    path = tmp_path / "inv.toml"
    path.write_text("".join(f'[profiles.N{i}]\ncalled_ae = "P{i}"\nhost = "127.0.0.1"\nport = {1000 + i % 60000}\n'
                            for i in range(10_000)))
    t0 = time.monotonic()
    nodes = load_inventory(path)
    assert len(nodes) == 10_000 and time.monotonic() - t0 < 20


# ---- serve-metrics ------------------------------------------------------------------------------


@pytest.fixture
def metrics_server(tmp_path):
    path = tmp_path / "m.prom"
    path.write_text("qrdoctor_up 1\n")
    before = set(threading.enumerate())
    server = make_server(str(path), port=0, request_timeout=0.5)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, before
    server.shutdown()
    server.server_close()


def _scrape(port: int) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        c.request("GET", "/metrics")
        return c.getresponse().status
    finally:
        c.close()


def _threads_settle(before: set[threading.Thread], seconds: float) -> list[threading.Thread]:
    end = time.monotonic() + seconds
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()
                 and t.name != "serve_forever" and "serve_forever" not in repr(t._target)]  # noqa: SLF001
        if len(extra) <= 1 or time.monotonic() > end:  # the serve_forever thread itself
            return extra
        time.sleep(0.05)


def test_requests_that_never_finish_do_not_hold_threads(metrics_server):
    server, before = metrics_server
    port = server.server_address[1]
    assert server.server_address[0] == "127.0.0.1"  # the default, as for the command's --host
    socks = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall([b"GET /metr", b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "][i % 3])
        socks.append(s)
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        # every slow connection is dropped at the request time limit; no thread is left
        assert len(_threads_settle(before, 3.0)) <= 1
        assert time.monotonic() - t0 < 3.0
        assert _scrape(port) == 200
    finally:
        for s in socks:
            s.close()


def test_many_idle_connections_are_bounded(metrics_server):
    server, before = metrics_server
    port = server.server_address[1]
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    try:
        time.sleep(0.3)
        busy = len([t for t in threading.enumerate() if t not in before])
        assert busy <= 70, busy  # a thread per connection only up to the server's limit
    finally:
        for s in socks:
            s.close()
    assert len(_threads_settle(before, 3.0)) <= 1
    assert _scrape(port) == 200


def test_huge_requests_are_refused_quickly(metrics_server):
    server, before = metrics_server
    port = server.server_address[1]
    for data in (b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n",
                 b"GET /metrics HTTP/1.1\r\n" + b"X-H: v\r\n" * 500 + b"\r\n",
                 b"GET /metrics HTTP/1.1\r\nX-Big: " + b"b" * 200_000 + b"\r\n\r\n",
                 b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 4):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        try:
            try:
                s.sendall(data)
            except OSError:
                pass
            answer = b""
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError:
                pass
        finally:
            s.close()
        # an error (HTTP/1.x, or a bare HTTP/0.9 page for a request line without a version), never the file
        assert b"qrdoctor_up" not in answer and len(answer) < 4096
    assert _scrape(port) == 200
    assert len(_threads_settle(before, 3.0)) <= 1
