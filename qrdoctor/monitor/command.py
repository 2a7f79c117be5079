"""The command line of the monitoring outputs: ``check --nagios / --prometheus``, ``fleet`` and
``serve-metrics``. Building the parsers imports nothing heavy (no pydantic, no pynetdicom): the
commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from qrdoctor.cliargs import whole_number
from qrdoctor.core.target import TargetError

if TYPE_CHECKING:
    from qrdoctor.core.model import Report


class MonitorUsageError(TargetError):
    """A usage error of the monitoring options: the CLI says it in one line, as any bad input,
    and exits 2 (UNKNOWN, 3, with --nagios)."""


def _range(value: str) -> str:
    from qrdoctor.monitor.nagios import Range, RangeError

    try:
        Range.parse(value)
    except RangeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_monitoring_options(p: argparse.ArgumentParser, fleet: bool = False) -> None:
    g = p.add_argument_group("monitoring outputs")
    what = "one line for the whole fleet" if fleet else "the status line"
    g.add_argument("--nagios", action="store_true",
                   help=f"print Monitoring Plugins output ({what}: QRDOCTOR OK|WARNING|CRITICAL|UNKNOWN - "
                        "text | perfdata) on stdout, and exit 0/1/2/3 as Nagios/Icinga expect")
    g.add_argument("--warning", metavar="RANGE", type=_range, default=None,
                   help="with --nagios: WARNING when a latency (seconds) is outside RANGE "
                        "(plugin syntax: 10, 10:, ~:10, 10:20, @10:20)")
    g.add_argument("--critical", metavar="RANGE", type=_range, default=None,
                   help="with --nagios: CRITICAL when a latency (seconds) is outside RANGE")
    g.add_argument("--prometheus", metavar="FILE", default=None,
                   help="write the metrics in the Prometheus text format (for node_exporter's textfile "
                        "collector: name it *.prom)")


def check_monitoring_args(args: argparse.Namespace) -> None:
    if (args.warning or args.critical) and not args.nagios:
        raise MonitorUsageError("--warning and --critical set Nagios thresholds: use them with --nagios")
    if args.nagios and getattr(args, "json", None) == "-":
        raise MonitorUsageError("--nagios prints the plugin output on stdout: write --json to a file")
    if args.prometheus:
        from qrdoctor.preflight import check_report_path

        check_report_path(args.prometheus)


def thresholds(args: argparse.Namespace):
    from qrdoctor.monitor.nagios import Thresholds

    return Thresholds.parse(args.warning, args.critical)


def after_check(report: Report, args: argparse.Namespace) -> int | None:
    """After ``check``'s reports: the Prometheus file and the plugin output, from the report
    redacted as the reports are (a summary may quote the PACS); the plugin's exit status with
    --nagios (None otherwise: the check's own exit status stands)."""
    from qrdoctor.reports.redaction import redact_report

    report = redact_report(report, include_phi=bool(getattr(args, "include_phi", False)))
    if getattr(args, "prometheus", None):
        from qrdoctor.monitor.prometheus import write_metrics

        write_metrics(args.prometheus, [(getattr(args, "target", None) or report.target.called_ae, report)])
        print(f"Prometheus metrics written to {args.prometheus}", file=sys.stderr)
    if getattr(args, "nagios", False):
        from qrdoctor.monitor.nagios import check_output

        out = check_output(report, thresholds(args))
        sys.stdout.write(out.render())
        sys.stdout.flush()
        return out.state
    return None


def nagios_usage_error(message: str) -> int:
    """A usage error under --nagios: the plugin API wants UNKNOWN (3) and a line on stdout."""
    from qrdoctor.monitor.nagios import UNKNOWN, PluginOutput

    sys.stdout.write(PluginOutput(UNKNOWN, f"usage error: {message}", [], []).render())
    return UNKNOWN


# ---- qrdoctor fleet ---------------------------------------------------------------------------


def fleet_parser(p: argparse.ArgumentParser, timeout_type, timeout_help: str) -> None:
    p.add_argument("inventory", metavar="FILE", help="the inventory: a profiles TOML with [profiles.NAME] nodes")
    p.add_argument("--only", metavar="CHECK,...", default=None,
                   help="run only these checks on every node (instead of the nodes' and groups' selections)")
    p.add_argument("--parallel", type=whole_number(1, 256), default=8, metavar="N", help="nodes checked at once (default 8)")
    p.add_argument("--timeout", type=timeout_type, default=None, metavar="S", help=timeout_help)
    p.add_argument("--node-deadline", type=timeout_type, default=None, metavar="S",
                   help="longest a node's whole run may take (default: the sum of its checks' deadlines + 5 s)")
    p.add_argument("--json", metavar="FILE", default=None, help="write the fleet JSON ('-' for stdout)")
    p.add_argument("--md", metavar="FILE", default=None, help="write the fleet's Markdown page")
    p.add_argument("--html", metavar="FILE", default=None, help="write the fleet's HTML page")
    p.add_argument("--out-dir", metavar="DIR", default=None,
                   help="write each node's JSON and HTML report into DIR (the pages link to them)")
    p.add_argument("--include-phi", action="store_true",
                   help="keep patient names, IDs, birth dates and accession numbers in the reports")
    add_monitoring_options(p, fleet=True)


def _progress(stream):
    def show(run, done: int, total: int) -> None:
        from qrdoctor.core.escape import for_terminal

        problem = run.first_problem
        tail = f"  {problem['check']} {problem['code']}".rstrip() if problem and run.report is not None else ""
        if run.report is None:
            tail = f"  {run.error}"
        print(for_terminal(f"[{done:>{len(str(total))}}/{total}] {run.node.name}: {run.status} "
                           f"({run.duration_s:.1f} s){tail}"), file=stream, flush=True)
    return show


def run_fleet(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qrdoctor.core.escape import for_terminal
    from qrdoctor.interrupt import Interrupts
    from qrdoctor.monitor.fleet import Fleet
    from qrdoctor.monitor.fleetreport import (
        atomic_write,
        fleet_document,
        fleet_html,
        fleet_json,
        fleet_markdown,
        table_lines,
        write_node_reports,
    )
    from qrdoctor.monitor.inventory import expand_checks, load_inventory
    from qrdoctor.preflight import check_report_path

    check_monitoring_args(args)
    for path in (args.md, args.html, None if args.json == "-" else args.json):
        check_report_path(path)
    only = expand_checks([w for w in args.only.split(",") if w.strip()], "--only") if args.only else None
    nodes = load_inventory(args.inventory, only=only, timeout=args.timeout)
    data_on_stdout = args.nagios or args.json == "-"
    print(f"qrdoctor fleet: {len(nodes)} node{'' if len(nodes) == 1 else 's'} from {args.inventory}, {args.parallel} at once",
          file=sys.stderr, flush=True)
    fleet = Fleet(nodes, parallel=args.parallel, include_phi=bool(args.include_phi),
                  node_deadline=args.node_deadline, progress=_progress(sys.stderr))
    # SIGINT and SIGTERM cancel every node, as they cancel a check: the reports of what ran are
    # written all the same, and the exit status is 130 or 143 (a second signal stops at once).
    with Interrupts() as interrupts:
        interrupts.watch(fleet)
        runs = fleet.run()
    base = Path(args.json).parent if args.json and args.json != "-" else None
    if args.out_dir:
        write_node_reports(runs, args.out_dir, private=bool(args.include_phi))
    doc = fleet_document(runs, inventory=args.inventory, started_at=fleet.started_at,
                         duration_s=fleet.duration_s, parallel=args.parallel,
                         include_phi=bool(args.include_phi), base=base)
    table_out = sys.stderr if data_on_stdout else sys.stdout
    for line in table_lines(doc):
        print(line, file=table_out)
    if args.json == "-":
        sys.stdout.write(fleet_json(doc))
    elif args.json:
        atomic_write(args.json, fleet_json(doc), private=bool(args.include_phi))
        print(f"Fleet JSON written to {args.json}", file=sys.stderr)
    for path, render, what in ((args.md, fleet_markdown, "Markdown"), (args.html, fleet_html, "HTML")):
        if path:
            page = dict(doc, nodes=[dict(n, reports={k: _relative_to(v, args.json, path)
                                                   for k, v in n["reports"].items()}) for n in doc["nodes"]])
            atomic_write(path, render(page), private=bool(args.include_phi))
            print(f"Fleet {what} page written to {for_terminal(path)}", file=sys.stderr)
    if args.prometheus:
        from qrdoctor.monitor.prometheus import write_metrics

        write_metrics(args.prometheus, [(r.node.name, r.report) for r in runs if r.report is not None])
        print(f"Prometheus metrics written to {args.prometheus}", file=sys.stderr)
    if args.nagios:
        from qrdoctor.monitor.nagios import fleet_output

        out = fleet_output([(r.node.name, r.report, r.error) for r in runs], thresholds(args), fleet.duration_s)
        sys.stdout.write(out.render())
        return out.state
    if interrupts.interrupted:
        print(f"qrdoctor fleet: interrupted by {interrupts.name}; the nodes that had not finished are "
              "reported as cancelled", file=sys.stderr, flush=True)
        return interrupts.exit_code
    return int(doc["exit_code"])


def _relative_to(path: str, json_path: str | None, page: str) -> str:
    """A node report's path (relative to the fleet JSON's folder) as the page at ``page`` links it."""
    import os
    from pathlib import Path

    base = Path(json_path).parent if json_path and json_path != "-" else Path(".")
    absolute = (base / path).resolve()
    try:
        return os.path.relpath(absolute, Path(page).resolve().parent)
    except ValueError:
        return str(absolute)


# ---- qrdoctor serve-metrics -------------------------------------------------------------------


def serve_metrics_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the metrics file written by --prometheus")
    p.add_argument("--port", type=int, default=9479, help="port to serve /metrics on (default 9479)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")


def run_serve_metrics(args: argparse.Namespace) -> int:
    from qrdoctor.monitor.serve import serve

    return serve(args.file, args.host, args.port)
