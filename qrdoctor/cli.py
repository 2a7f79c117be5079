"""The command line: ``qrdoctor check | explain | checks | schema | simulate | demo``.

stdout carries the command's output (the summary, or the JSON with ``--json -``); messages for
people (errors, progress, where files went) go to stderr. Exit codes are :class:`ExitCode`.

Start-up is instant: ``--version``, ``--help``, ``explain`` and ``checks`` import neither
pynetdicom, pydicom nor pydantic (nor Textual). The parser builds the options of the one
subcommand being run (the checks' option flags come from the static table of their Options
fields, :data:`qrdoctor.core.catalog.OPTIONS`), and every command imports what it needs when it
runs: ``check --only network.tcp`` loads the network checks alone, and the report writers are
loaded when a report is written, after the run (``tests/test_startup.py`` guards this).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shlex
import sys
from typing import TYPE_CHECKING

from qrdoctor import __version__
from qrdoctor.core.escape import for_terminal
from qrdoctor.core.target import (
    DEFAULT_CALLING_AE,
    MAX_TIMEOUT,
    TargetError,
    check_ae_title,
    check_port,
    profile_settings,
    resolve_target,
)
from qrdoctor.preflight import LocalResourceError

if TYPE_CHECKING:
    from qrdoctor.core.model import Report

# ExitCode.USAGE, without importing the report model (pydantic) to say so.
USAGE = 2

# The subcommands, in the order --help lists them.
COMMANDS = ("check", "tui", "explain", "checks", "schema", "replay", "simulate", "demo", "diff", "fleet",
            "serve-metrics")

EPILOG_DIFF = """exit status:
  0  nothing got worse
  1  something got worse (a status, a new problem, a fact, a latency)
  2  a report cannot be read, or the reports are of different targets (see --force)
"""

EPILOG_CHECK = """exit status:
  0  no check failed
  1  at least one check failed
  2  usage or configuration error
  3  qrdoctor itself broke (a check ended in `error` and none failed)
"""


# The one timeout model, as the README's "Timeouts" explains it.
TIMEOUT_HELP = (
    "seconds each network step may take: a connection, an association, one DIMSE response "
    "(default %s). A check's deadline is its budget times this plus 2 s; a retrieve counts as "
    "stalled after --stall-s seconds without progress (default twice this)"
)


class UsageError(Exception):
    pass


def _ae(what: str):
    def parse(value: str) -> str:
        try:
            return check_ae_title(value, what)
        except TargetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _port(what: str):
    def parse(value: str) -> int:
        try:
            return check_port(value, what)
        except TargetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _store_port(value: str) -> int:
    if value.strip() == "0":
        return 0
    return _port("The store port")(value)


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1 or n > 200_000:
        raise argparse.ArgumentTypeError(f"{n} is out of range (1-200000)")
    return n


def _timeout(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout {value!r} is not a number of seconds") from None
    if not math.isfinite(t) or t <= 0 or t > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"timeout {t:g} s is out of range (more than 0, at most {MAX_TIMEOUT:g})")
    return t


class Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code and a one-line message (with --nagios, as the
    Monitoring Plugins API wants: an UNKNOWN line on stdout and exit status 3)."""

    nagios = False  # set by main() when the command line asks for plugin output

    def error(self, message: str) -> None:  # type: ignore[override]
        if Parser.nagios:
            from qrdoctor.monitor.command import nagios_usage_error

            sys.stderr.write(f"qrdoctor: error: {message}\n")
            self.exit(nagios_usage_error(message))
        self.exit(USAGE, f"qrdoctor: error: {message}\n(see: {self.prog} --help)\n")


def add_target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calling-ae", type=_ae("The calling AE title"), default=None,
                   help=f"our AE title (default {DEFAULT_CALLING_AE})")
    p.add_argument("--move-ae", type=_ae("The move destination AE title"), default=None,
                   help="AE title the PACS sends C-MOVE results to (default: the calling AE)")
    p.add_argument("--store-port", type=_store_port, default=None,
                   help="port of the temporary Store SCP for retrieve checks (default 11113)")
    p.add_argument("--advertise", metavar="HOST", default=None,
                   help="the address the PACS should use to reach us (used in fix texts)")
    p.add_argument("--timeout", type=_timeout, default=None, metavar="S", help=TIMEOUT_HELP % "10")
    p.add_argument("--tls", action="store_true", help="speak DICOM over TLS to the PACS")
    p.add_argument("--tls-ca", metavar="FILE", default=None,
                   help="certificate authority (PEM) to trust for the PACS (default: the system's)")
    p.add_argument("--tls-cert", metavar="FILE", default=None, help="our client certificate (PEM), if the PACS requires one")
    p.add_argument("--tls-key", metavar="FILE", default=None, help="the client certificate's private key (PEM)")
    p.add_argument("--tls-no-verify", action="store_true", help="do not verify the PACS certificate (tests only)")


def add_report_files(p: argparse.ArgumentParser, which: str = "") -> None:
    """One flag per report format (--json, --md, ...), from the table of formats."""
    from qrdoctor.reports.formats import REPORT_FORMATS

    for fmt in REPORT_FORMATS:
        to_stdout = " ('-' for stdout)" if fmt.stdout else ""
        p.add_argument(fmt.flag, dest=fmt.name, metavar="FILE", default=None,
                       help=f"write the {which}{fmt.label}: {fmt.about}{to_stdout}")


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", metavar="CHECK,...", default=None,
                   help="run only these checks (and the checks they require)")
    add_report_files(p)
    p.add_argument("--include-phi", action="store_true",
                   help="keep patient names, IDs, birth dates and accession numbers in the reports")
    p.add_argument("--details", action="store_true", help="print every problem with its fix")


def _option_type(field):
    """argparse type of a declared option: the text as a value of the field's kind."""
    from qrdoctor.core.options import OptionError

    def convert(text: str):
        try:
            return field.convert(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = field.kind.__name__
    return convert


def _metavar(field) -> str:
    if field.kind is int:
        return "N"
    if field.kind is float:
        return "S" if field.in_seconds else "X"
    return field.name.rsplit("_", 1)[-1].upper()  # --listen-host HOST


def add_check_options(p: argparse.ArgumentParser) -> None:
    """One flag per field the checks declare in their Options models (a profile may set them too),
    from the static table of those fields: building the parser imports no check."""
    from qrdoctor.core.option_fields import catalog_fields

    group = p.add_argument_group("options of the checks", "a saved profile may set these too, under the same names")
    for field in catalog_fields():
        help_text = field.help.replace("%", "%%")
        if field.kind is bool:
            group.add_argument(field.flag, dest=field.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(field.flag, dest=field.name, default=None, type=_option_type(field),
                               metavar=_metavar(field), help=help_text)


def command_of(argv: list[str]) -> str | None:
    """The subcommand ``argv`` runs: its first word that is not an option, if it names one."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(commands: set[str] | frozenset[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``commands``, only those subcommands get their options (the others are
    listed by --help all the same), so parsing one command imports only what it needs."""
    parser = Parser(prog="qrdoctor", description="Diagnose DICOM Query/Retrieve problems against a PACS.")
    parser.add_argument("--version", action="version", version=f"qrdoctor {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    wanted = set(COMMANDS) if commands is None else set(commands)
    build = {
        "check": _check_parser, "tui": _tui_parser, "explain": _explain_parser,
        "checks": lambda p: None, "schema": lambda p: None, "replay": _replay_parser,
        "simulate": _simulate_parser, "demo": _demo_parser, "diff": _diff_parser,
        "fleet": _fleet_parser, "serve-metrics": _serve_metrics_parser,
    }
    for name in COMMANDS:
        help_text, extra = _COMMAND_HELP[name]
        p = sub.add_parser(name, help=help_text, **extra)
        if name in wanted:
            build[name](p)
    return parser


_COMMAND_HELP: dict[str, tuple[str, dict]] = {
    "check": ("run the staged diagnosis against a PACS",
              {"epilog": EPILOG_CHECK, "formatter_class": argparse.RawDescriptionHelpFormatter}),
    "tui": ("the interactive troubleshooter (also: qrdoctor with no arguments)", {}),
    "explain": ("print the long explanation of a finding code", {}),
    "checks": ("list the checks in the order they run", {}),
    "schema": ("print the JSON Schema of the report", {}),
    "replay": ("re-run the conclusions of a support bundle with this qrdoctor, offline", {}),
    "simulate": ("run the embedded simulated PACS in the foreground", {}),
    "demo": ("diagnose the embedded simulated PACS, which has a few typical problems", {}),
    "diff": ("what changed between two reports of the same target",
             {"epilog": EPILOG_DIFF, "formatter_class": argparse.RawDescriptionHelpFormatter}),
    "fleet": ("check every node of an inventory, concurrently (see README: Monitoring many nodes)",
              {"epilog": EPILOG_CHECK.replace("no check failed", "no check failed on any node"),
               "formatter_class": argparse.RawDescriptionHelpFormatter}),
    "serve-metrics": ("serve a --prometheus metrics file at http://127.0.0.1:PORT/metrics", {}),
}


def _check_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", default=None,
                   help="AE@host:port (e.g. ORTHANC@127.0.0.1:4242) or a saved profile name; may be "
                        "left out with --dicomweb URL (a DICOMweb-only run)")
    add_target_options(p)
    add_report_options(p)
    add_check_options(p)
    from qrdoctor.monitor.command import add_monitoring_options

    add_monitoring_options(p)


def _fleet_parser(p: argparse.ArgumentParser) -> None:
    from qrdoctor.monitor.command import fleet_parser

    fleet_parser(p, _timeout, TIMEOUT_HELP % "10")


def _serve_metrics_parser(p: argparse.ArgumentParser) -> None:
    from qrdoctor.monitor.command import serve_metrics_parser

    serve_metrics_parser(p)


def _tui_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", help="AE@host:port or a saved profile; omit for the connection form")
    add_target_options(p)
    p.add_argument("--include-phi", action="store_true", help="show and export patient data unredacted")
    add_check_options(p)


def _explain_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("code", nargs="?", help="a finding code, e.g. tcp-refused (omit to list all)")


def _replay_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE.zip", help="a support bundle written by --bundle")
    add_report_files(p, which="replayed ")
    p.add_argument("--details", action="store_true", help="print every problem with its fix")
    p.set_defaults(include_phi=False)


def _web_port(value: str) -> int:
    return 0 if value.strip() == "0" else _port("The DICOMweb port")(value)


def _simulate_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_store_port, default=11112, help="port to listen on (default 11112; 0 = any free port)")
    p.add_argument("--ae", type=_ae("The simulator's AE title"), default="SIMPACS", help="its AE title (default SIMPACS)")
    p.add_argument("--quirks", default="", help="comma-separated quirks (see: qrdoctor demo --list-quirks)")
    p.add_argument("--studies", type=_count, default=40, help="number of studies (default 40)")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (default 1)")
    p.add_argument("--destination", action="append", default=[], metavar="AE=HOST:PORT",
                   help="a C-MOVE destination it knows (default QRDOCTOR=127.0.0.1:11113); repeatable")
    p.add_argument("--dicomweb", action="store_true",
                   help="also serve the archive over DICOMweb (QIDO-RS, WADO-RS); any web-* quirk implies it")
    p.add_argument("--dicomweb-port", type=_web_port, default=0, metavar="PORT",
                   help="port of the DICOMweb face (default 0 = any free port; the URL is printed)")


def _diff_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", metavar="OLD.json", help="the earlier report (JSON, or an HTML report)")
    p.add_argument("new", metavar="NEW.json", help="the later report of the same target")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--md", dest="diff_format", action="store_const", const="md", help="print Markdown")
    fmt.add_argument("--json", dest="diff_format", action="store_const", const="json", help="print JSON")
    p.add_argument("--latency-threshold", metavar="PCT", type=_percent, default=50.0,
                   help="report a latency that moved by more than PCT percent (and 10 ms; default 50)")
    p.add_argument("--force", action="store_true", help="compare reports of different targets")


def _percent(value: str) -> float:
    try:
        pct = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percentage") from None
    if not math.isfinite(pct) or pct < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percentage of 0 or more")
    return pct


def _demo_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="print the terminal summary instead of opening the TUI")
    p.add_argument("--list-quirks", action="store_true", help="explain every quirk the simulator can play")
    p.add_argument("--quirks", default=None, help="play these quirks instead of the demo's own")
    p.add_argument("--studies", type=_count, default=None, help="size of the simulated archive")
    p.add_argument("--timeout", type=_timeout, default=5.0, metavar="S", help=TIMEOUT_HELP % "5")
    add_report_options(p)
    add_check_options(p)


def _tls(args: argparse.Namespace):
    """TLSOptions from --tls* (any --tls-* option implies --tls)."""
    wanted = getattr(args, "tls", False) or any(
        getattr(args, name, None) for name in ("tls_ca", "tls_cert", "tls_key", "tls_no_verify"))
    if not wanted:
        return None
    from qrdoctor.core.target import TLSOptions

    return TLSOptions(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
                      verify=not args.tls_no_verify)


def _only(value: str | None) -> list[str] | None:
    if not value:
        return None
    from qrdoctor.core.catalog import CHECKS  # the registry's checks, without importing them

    ids = [v.strip() for v in value.split(",") if v.strip()]
    known = {c.id for c in CHECKS}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UsageError(f"unknown check id {', '.join(unknown)} in --only (see: qrdoctor checks)")
    return ids


def _options(args: argparse.Namespace, saved: dict | None = None, **fixed: object):
    """The checks' typed options: a saved profile's values, then the flags, then ``fixed``.

    Only the option models of the options given are loaded (from their own modules, not their
    checks'): a value left out is its model's default, which :meth:`RunOptions.get` gives all the same.
    """
    from qrdoctor.core.option_fields import catalog_fields, declared_values, option_owners
    from qrdoctor.core.options import OptionError, RunOptions
    from qrdoctor.core.registry import declared_option_models

    fields = catalog_fields()
    from_profile = declared_values(saved or {}, fields)
    from_flags = declared_values(vars(args), fields)
    owners = option_owners([*from_profile, *from_flags, *fixed])
    models = declared_option_models(owners)
    flat = dict(from_profile)
    try:  # a file's values must already be of their type: `true` is not the number 1
        RunOptions.from_flat(flat, models, strict=True)
    except OptionError as exc:
        raise UsageError(f"in the saved profile: {exc}") from None
    flat.update(from_flags)
    flat.update(fixed)
    try:
        return RunOptions.from_flat(flat, models)
    except OptionError as exc:
        raise UsageError(str(exc)) from None


def _check_report_paths(args: argparse.Namespace) -> None:
    from qrdoctor.preflight import check_report_path
    from qrdoctor.reports.formats import REPORT_FORMATS

    to_stdout = " or ".join(f.flag for f in REPORT_FORMATS if f.stdout)
    for fmt in REPORT_FORMATS:
        path = getattr(args, fmt.name, None)
        if path == "-" and not fmt.stdout:
            raise UsageError(f"{fmt.flag} needs a file name ('-' is only for {to_stdout})")
        check_report_path(path)


def _check_local_resources(target, options, only: list[str] | None) -> None:
    """Before the run: the --keep-files folder, and the store port when a C-MOVE will need it."""
    from qrdoctor.core.catalog import requirement_closure
    from qrdoctor.core.option_fields import catalog_fields
    from qrdoctor.preflight import check_keep_folder, check_store_port

    flat = options.flat()
    defaults = {f.name: f.default for f in catalog_fields()}
    check_keep_folder(flat.get("keep_files", defaults.get("keep_files")))
    if not only or "retrieve.move" in requirement_closure(only):
        check_store_port(str(flat.get("listen_host", defaults.get("listen_host")) or "0.0.0.0"), target.store_port)


def write_reports(report: Report, args: argparse.Namespace) -> None:
    """Every requested report, each redacted unless --include-phi."""
    from qrdoctor.reports import render, write_report
    from qrdoctor.reports.formats import REPORT_FORMATS

    phi = bool(getattr(args, "include_phi", False))
    for fmt in REPORT_FORMATS:
        path = getattr(args, fmt.name, None)
        if path == "-":
            _to_stdout(render(report, fmt.name, include_phi=phi))
        elif path:
            try:
                write_report(report, fmt.name, path, include_phi=phi)
            except OSError as exc:
                raise UsageError(f"cannot write the {fmt.label} to {path}: {exc.strerror or exc}") from None
            print(f"{fmt.title} written to {path}", file=sys.stderr)


def _to_stdout(content: str | bytes) -> None:
    if isinstance(content, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(content.rstrip("\n") + "\n")


def _stdout_is_data(args: argparse.Namespace) -> bool:
    """Whether a report goes to stdout, so the summary for people must go to stderr."""
    from qrdoctor.reports.formats import REPORT_FORMATS

    return getattr(args, "nagios", False) or any(getattr(args, f.name, None) == "-" for f in REPORT_FORMATS)


def target_and_options(args: argparse.Namespace):
    """The target (AE@host:port or a saved profile) and the checks' options for it; without a
    target, a DICOMweb-only run (``--dicomweb URL``)."""
    if not getattr(args, "target", None):
        options = _options(args)
        url = options.flat().get("dicomweb")
        if not url:
            raise UsageError("give a TARGET (AE@host:port or a saved profile), or --dicomweb URL "
                             "for a DICOMweb-only run")
        from qrdoctor.core.target import DEFAULT_TIMEOUT, Target

        return Target.dicomweb_only(url, timeout=args.timeout or DEFAULT_TIMEOUT), options
    target = resolve_target(
        args.target, calling_ae=args.calling_ae, move_ae=args.move_ae, store_port=args.store_port,
        advertise=args.advertise, timeout=args.timeout, tls=_tls(args),
    )
    options = _options(args, saved=profile_settings(args.target))
    url = options.flat().get("dicomweb")
    return (target.replace(dicomweb=url) if url else target), options


def _check_selection(target, options, only: list[str] | None) -> None:
    """Every check --only names must be able to run: a DICOMweb check needs --dicomweb URL, and
    a DICOMweb-only run has no DIMSE check to run."""
    from qrdoctor.core.catalog import CHECKS, ENABLED_BY
    from qrdoctor.core.option_fields import option_owners
    from qrdoctor.core.registry import declared_option_models, enabled_by_options

    flat = options.flat()
    for model in declared_option_models(option_owners(flat)):
        local = getattr(options.get(model), "check_local", None)
        if callable(local):  # files and environment variables this computer must provide
            try:
                local()
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    for name in flat:  # an option of a check that this run cannot enable
        for cid in option_owners([name]):
            if not enabled_by_options(cid, flat):
                raise UsageError(f"--{name.replace('_', '-')} needs --{ENABLED_BY[cid].replace('_', '-')} URL")
    if not only:
        return
    stages = {e.id: e.stage for e in CHECKS}
    for cid in only:
        if not enabled_by_options(cid, flat):
            flag = "--" + ENABLED_BY[cid].replace("_", "-")
            raise UsageError(f"{cid} needs {flag} URL (the DICOMweb base URL)")
        if not target.dimse and stages.get(cid) != "dicomweb":
            raise UsageError(f"{cid} needs a DIMSE TARGET (AE@host:port); this run has only --dicomweb")


def run_check(args: argparse.Namespace) -> int:
    target, options = target_and_options(args)
    only = _only(args.only)
    _check_selection(target, options, only)
    _check_report_paths(args)
    from qrdoctor.monitor.command import check_monitoring_args

    check_monitoring_args(args)
    if target.dimse:
        _check_local_resources(target, options, only)
    out = sys.stderr if _stdout_is_data(args) else sys.stdout
    who = f" as {target.calling_ae}" if target.dimse else ""
    print(for_terminal(f"qrdoctor {__version__}: checking {target.label}{who}"), file=out, flush=True)
    return run_and_report(target, only, options, args, out)


def run_and_report(target, only: list[str] | None, options, args: argparse.Namespace, out) -> int:
    """Run the checks with the terminal summary, then --details and the reports.

    SIGINT and SIGTERM cancel the run (see :mod:`qrdoctor.interrupt`): the reports are written
    all the same, marked interrupted, the temporary files are removed, and the exit status is
    130 or 143.
    """
    from qrdoctor.console import details
    from qrdoctor.core.runner import Runner, target_info
    from qrdoctor.interrupt import (
        FinishedChecks,
        Interrupts,
        mark_interrupted,
        remove_temporary_files,
    )
    from qrdoctor.reports.live import RedactedLiveSummary

    runners: list[Runner] = []
    info = target_info(target)
    live = RedactedLiveSummary(out, info, lambda: runners[0].phi_so_far(), bool(args.include_phi))
    with Interrupts() as interrupts:
        runner = Runner(target, only=only, observer=FinishedChecks(live, interrupts), options=options,
                        command_line=getattr(args, "command_line", None))
        runners.append(runner)
        interrupts.watch(runner)
        gc.freeze()  # what start-up made lives as long as the process: never scan it again
        gc.enable()  # (paused for the start-up, see main)
        report = runner.run()
        if interrupts.interrupted:
            report = mark_interrupted(report, interrupts)
            remove_temporary_files()
            print(f"qrdoctor: interrupted by {interrupts.name}; the checks that had not finished are "
                  "skipped", file=sys.stderr, flush=True)
        if args.details:
            from qrdoctor.reports import redact_report
            from qrdoctor.reports.reproduce import reproductions

            shown = redact_report(report, include_phi=args.include_phi)
            commands = {k: r.lines() for k, r in reproductions(shown).items()}
            for line in details(shown, commands):
                print(line, file=out)
        if getattr(args, "command", None) == "check":
            print_tested_identity(report, out)
        write_reports(report, args)
        if getattr(args, "nagios", False) or getattr(args, "prometheus", None):
            from qrdoctor.monitor.command import after_check

            plugin_state = after_check(report, args)
            if plugin_state is not None:
                return plugin_state
    return interrupts.exit_code if interrupts.interrupted else int(report.exit_code)


def print_tested_identity(report: Report, out) -> None:
    """Say, after the summary, when the run tested qrdoctor's own registration on the PACS
    rather than the workstation's."""
    import textwrap

    from qrdoctor.reports.runinfo import serial_retries, tested_identity

    for note in (tested_identity(report), serial_retries(report)):
        if note:
            print("", file=out)
            print(textwrap.fill(f"Note: {note}", width=100, break_on_hyphens=False), file=out)


def run_replay(args: argparse.Namespace) -> int:
    """Conclude a recorded bundle's observations again, with no network; show what changed."""
    from qrdoctor.console import check_line, details, verdict
    from qrdoctor.core.replay import ReplayError, load_bundle, replay

    _check_report_paths(args)
    try:
        recorded, document = load_bundle(args.bundle)
        report = replay(recorded, document)
    except ReplayError as exc:
        raise UsageError(str(exc)) from None
    out = sys.stderr if _stdout_is_data(args) else sys.stdout
    was = {c.id: c for c in recorded.checks}
    print(for_terminal(f"qrdoctor {__version__}: replaying {args.bundle} (recorded by qrdoctor "
                       f"{recorded.tool.version} against {recorded.target.called_ae}@{recorded.target.host}:"
                       f"{recorded.target.port} at {recorded.started_at}; no network is used)"), file=out)
    width = max((len(c.id) for c in report.checks), default=10) + 1
    for c in report.checks:
        old = was.get(c.id)
        changed = ""
        if old is not None and (old.status != c.status or {f.code for f in old.findings} != {f.code for f in c.findings}):
            changed = f"   (recorded: {old.status.value}{' [' + ', '.join(sorted({f.code for f in old.findings})) + ']' if old.findings else ''})"
        print(check_line(c, width) + changed, file=out)
    print(verdict(report), file=out)
    if args.details:
        from qrdoctor.reports import redact_report

        for line in details(redact_report(report)):
            print(line, file=out)
    write_reports(report, args)
    return int(report.exit_code)


def run_diff(args: argparse.Namespace) -> int:
    """Compare two reports; exit 1 when something got worse, 2 when one cannot be read."""
    from qrdoctor.reports.diff import (
        DiffInputError,
        TargetMismatchError,
        diff,
        render_markdown,
        render_text,
    )

    try:
        result = diff(args.old, args.new, latency_threshold=args.latency_threshold, force=args.force)
    except (DiffInputError, TargetMismatchError) as exc:
        raise UsageError(str(exc)) from None
    if args.diff_format == "json":
        _to_stdout(result.to_json())
    else:
        _to_stdout(render_markdown(result) if args.diff_format == "md" else render_text(result))
    return result.exit_code


def run_tui_command(args: argparse.Namespace) -> int:
    from qrdoctor.tui import run_tui

    target, options = target_and_options(args) if args.target else (None, _options(args))
    return run_tui(target, options=options, include_phi=bool(args.include_phi))


def run_explain(args: argparse.Namespace) -> int:
    from qrdoctor.core.explain import UnknownCodeError, explanations, get

    if not args.code:
        for code, exp in sorted(explanations().items()):
            print(f"{code:<28} {exp.title}")
        return 0
    try:
        print(get(args.code).text, end="")
    except UnknownCodeError:
        raise UsageError(f"unknown finding code {args.code!r} (see: qrdoctor explain)") from None
    return 0


def run_checks_list() -> int:
    from qrdoctor.core.catalog import CHECKS  # the registry's table, without importing the checks

    for c in CHECKS:
        req = f"  (requires {', '.join(c.requires)})" if c.requires else ""
        print(f"{c.stage:<12} {c.id:<24} {c.title}{req}")
    return 0


def _destinations(values: list[str]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for item in values or ["QRDOCTOR=127.0.0.1:11113"]:
        ae, sep, address = item.partition("=")
        host, sep2, port = address.rpartition(":")
        if not sep or not sep2 or not host:
            raise UsageError(f"destination {item!r} is not of the form AE=HOST:PORT")
        out[check_ae_title(ae, "The destination AE title")] = (host, check_port(port, "The destination port"))
    return out


def run_simulate(args: argparse.Namespace) -> int:
    from qrdoctor.simulator import SimulatedPACS, parse_quirks

    try:
        quirks = parse_quirks(args.quirks)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pacs = SimulatedPACS(ae_title=args.ae, host=args.host, port=args.port, studies=args.studies,
                         seed=args.seed, quirks=quirks, destinations=_destinations(args.destination),
                         dicomweb=args.dicomweb, dicomweb_port=args.dicomweb_port)
    try:
        pacs.start()
    except OSError as exc:
        where = f"{args.host}:{args.port}" + (f" and {args.dicomweb_port}" if pacs.dicomweb and args.dicomweb_port else "")
        raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    host = args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"Simulated PACS {args.ae} listening on {args.host}:{pacs.port} "
          f"({args.studies} studies; quirks: {args.quirks or 'none'})", flush=True)
    for ae, (h, p) in pacs.destinations.items():
        print(f"  knows the C-MOVE destination {ae} at {h}:{p}", flush=True)
    if pacs.dicomweb:
        print(f"  serves DICOMweb at {pacs.dicomweb_served_url}", flush=True)
        print(f"Diagnose it with:  qrdoctor check {args.ae}@{host}:{pacs.port} --dicomweb {pacs.dicomweb_url}",
              flush=True)
    else:
        print(f"Diagnose it with:  qrdoctor check {args.ae}@{host}:{pacs.port}", flush=True)
    print("Press Ctrl+C to stop.", file=sys.stderr, flush=True)
    pacs.serve_forever()
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from qrdoctor.core.target import Target
    from qrdoctor.simulator import (
        DEMO_QUIRKS,
        DEMO_STUDIES,
        demo_pacs,
        describe_quirks,
        parse_quirks,
    )

    if args.list_quirks:
        for usage, explanation in describe_quirks():
            print(f"{usage:<34} {explanation}")
        return 0
    quirks = args.quirks if args.quirks is not None else DEMO_QUIRKS
    try:
        parse_quirks(quirks)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check_report_paths(args)
    store_port = _free_port()
    pacs = demo_pacs(store_port, quirks=quirks, studies=args.studies or DEMO_STUDIES).start()
    try:
        target = Target(host="127.0.0.1", port=pacs.port, called_ae=pacs.ae_title, store_port=store_port,
                        advertise="127.0.0.1", timeout=args.timeout)
        # The demo checks the simulator's DICOMweb face too, at the URL a user would configure.
        options = _options(args, listen_host="127.0.0.1", dicomweb=pacs.dicomweb_url)
        target = target.replace(dicomweb=pacs.dicomweb_url)
        if not args.headless and sys.stdout.isatty() and sys.stdin.isatty():
            from qrdoctor.tui import run_tui

            return run_tui(target, options=options, include_phi=bool(args.include_phi), title="qrdoctor demo: a simulated PACS with typical problems")
        out = sys.stderr if _stdout_is_data(args) else sys.stdout
        only = _only(args.only)
        _check_local_resources(target, options, only)
        print(f"qrdoctor {__version__} demo: a simulated PACS ({pacs.ae_title}, quirks: {quirks}) "
              f"on {target.host}:{target.port}", file=out, flush=True)
        args.details = True  # the demo always explains what it found
        return run_and_report(target, only, options, args, out)
    finally:
        pacs.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report_schema() -> dict:
    from qrdoctor.core.model import Report

    return Report.model_json_schema(by_alias=True)


def command_line(argv: list[str] | None) -> str:
    """The command as typed (shell-quoted), for the report; the report redacts it like any text."""
    words = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["qrdoctor", *words])


def keep_numpy_out() -> None:
    """Make ``import numpy`` fail in this process, unless something imported it already.

    qrdoctor never decodes pixel data, but pydicom's ``config`` imports its pixel-data handlers,
    which import numpy whenever it is installed (0.1 s or more of start-up, and memory) just to
    note that it is there. A ``None`` entry in ``sys.modules`` makes that import raise
    ImportError, which pydicom takes as "numpy is not installed".
    """
    if "numpy" not in sys.modules:
        sys.modules["numpy"] = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    # Start-up creates many long-lived objects (modules, the report models' schemas) and no
    # garbage worth a collection pass: the cyclic collector waits until the run starts, and
    # then leaves them out of its passes (gc.freeze; a few ms of a monitoring echo's start-up);
    # see run_and_report, and the finally below (for callers that run main() in-process).
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.unfreeze()
        gc.enable()


def _main(argv: list[str] | None) -> int:
    keep_numpy_out()
    words = sys.argv[1:] if argv is None else list(argv)
    command = command_of(words)
    parser = build_parser({command} if command else set())
    Parser.nagios = command in ("check", "fleet") and "--nagios" in words
    args = parser.parse_args(words)
    args.command_line = command_line(argv)
    if args.command != "check":
        gc.enable()
    try:
        if args.command == "check":
            return run_check(args)
        if args.command == "explain":
            return run_explain(args)
        if args.command == "checks":
            return run_checks_list()
        if args.command == "schema":
            print(json.dumps(report_schema(), indent=2))
            return 0
        if args.command == "tui":
            return run_tui_command(args)
        if args.command is None and sys.stdin.isatty() and sys.stdout.isatty():
            from qrdoctor.tui import run_tui

            return run_tui(None)
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "replay":
            return run_replay(args)
        if args.command == "demo":
            return run_demo(args)
        if args.command == "diff":
            return run_diff(args)
        if args.command == "fleet":
            from qrdoctor.monitor.command import run_fleet

            return run_fleet(args)
        if args.command == "serve-metrics":
            from qrdoctor.monitor.command import run_serve_metrics

            return run_serve_metrics(args)
        parser.print_help()
        return USAGE
    except (UsageError, TargetError, LocalResourceError) as exc:
        print(f"qrdoctor: error: {for_terminal(str(exc))}", file=sys.stderr)
        if getattr(args, "nagios", False):
            from qrdoctor.monitor.command import nagios_usage_error

            return nagios_usage_error(str(exc))
        return USAGE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:  # before the run's handlers were installed, or a second Ctrl+C
        print("qrdoctor: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a local resource failed under us (a disk filled up, a folder went)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"qrdoctor: error: {for_terminal(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
