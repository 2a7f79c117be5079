"""The command line: ``qrdoctor check | explain | checks | schema | simulate | demo``.

stdout carries the command's output (the summary, or the JSON with ``--json -``); messages for
people (errors, progress, where files went) go to stderr. Exit codes are :class:`ExitCode`.

Start-up is instant: ``--version``, ``--help``, ``explain`` and ``checks`` import neither
pynetdicom, pydicom nor pydantic (nor Textual). The parser (:mod:`qrdoctor.cliargs`) builds the
options of the one subcommand being run, and every command here imports what it needs when it
runs: ``check --only network.tcp`` loads the network checks alone, and the report writers are
loaded when a report is written, after the run (``tests/test_startup.py`` guards this).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING, NoReturn

from qrdoctor import __version__
from qrdoctor.cliargs import (
    USAGE,
    Parser,
    UsageError,
    build_parser,
    command_of,
)
from qrdoctor.core.escape import for_terminal
from qrdoctor.core.target import (
    TargetError,
    check_ae_title,
    check_port,
    profile_settings,
    resolve_target,
)
from qrdoctor.preflight import LocalResourceError

if TYPE_CHECKING:
    from qrdoctor.core.model import Report

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


def run() -> NoReturn:
    """The program: ``qrdoctor`` and ``python -m qrdoctor``. :func:`main` is for callers in the
    same process (tests, embedding), which keep their interpreter."""
    end = _EndOfProgram()
    atexit.register(end)  # before any other: exit handlers run last-registered first
    end.code = main()
    sys.exit(end.code)


class _EndOfProgram:
    """The program's last exit handler: it ends the process once the others have run.

    Python's exit waits for the threads still running, runs the exit handlers (temporary
    directories removed, logging flushed), then frees every module and object one by one:
    29-51 ms of a 0.2 s monitoring echo after the last handler, measured. That last part serves
    nothing once main() has returned, so this handler, registered first and so run last,
    flushes the standard streams and ends the process with main()'s code. When main() did not
    return (an exception, argparse's own exit) it does nothing and the exit goes on as usual."""

    code: int | None = None

    def __call__(self) -> None:
        if self.code is None:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader that went away (`| head`), a closed stream
                pass
        os._exit(int(self.code) & 0xFF)


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
