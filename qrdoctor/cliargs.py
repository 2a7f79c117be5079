"""The command line's parsers: the subcommands, their flags and the converters that check each
value as it is parsed (an AE title, a port, a timeout).

Only the subcommand being run gets its options built (:func:`build_parser`), and the checks'
option flags come from the static table of their Options fields
(:data:`qrdoctor.core.catalog.OPTIONS`): parsing imports no check, no DICOM library and no
pydantic. The commands themselves are in :mod:`qrdoctor.cli`.
"""

from __future__ import annotations

import argparse
import math
import sys

from qrdoctor import __version__
from qrdoctor.core.target import (
    DEFAULT_CALLING_AE,
    MAX_TIMEOUT,
    TargetError,
    check_ae_title,
    check_port,
)

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


def _checked(check, what: str):
    """An argparse type that checks a value with one of core.target's checks (AE title, port)."""
    def parse(value: str):
        try:
            return check(value, what)
        except TargetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _ae(what: str):
    return _checked(check_ae_title, what)


def _port(what: str):
    return _checked(check_port, what)


def _store_port(value: str) -> int:
    if value.strip() == "0":
        return 0
    return _port("The store port")(value)


def whole_number(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high``."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{n} is out of range ({low}-{high})")
        return n
    return parse


_count = whole_number(1, 200_000)


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
