"""How the qrdoctor process ends: exit handlers run, output flushed, the heap not torn down.

``qrdoctor`` and ``python -m qrdoctor`` run :func:`qrdoctor.cli.run`, whose last exit handler
skips the interpreter's teardown of its objects (tens of milliseconds). These tests hold it to
what the ordinary exit guaranteed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from support.ports import free_port


def _program(main_body: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run qrdoctor's program entry with ``main_body`` as its main()."""
    code = "import atexit, sys, threading, time\nimport qrdoctor.cli as cli\n\ndef main():\n" + \
        textwrap.indent(textwrap.dedent(main_body), "    ") + "\ncli.main = main\ncli.run()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=_buffered())


def _buffered() -> dict[str, str]:
    """The environment with block-buffered output, as in production (a test runner may set
    PYTHONUNBUFFERED)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_exit_handlers_run_buffered_output_is_written_and_the_code_kept():
    # Given a run that registered an exit handler and left output in its buffers
    proc = _program("""
        atexit.register(lambda: print("handler ran"))
        print("report", end=" ")
        print("to people", end="", file=sys.stderr)
        return 3
    """)
    # Then both streams are complete, the handler ran, and the exit code is main()'s
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "report handler ran\n", "to people")


def test_a_thread_still_running_is_waited_for_as_by_an_ordinary_exit():
    # Given a non-daemon thread that has not finished when main() returns
    proc = _program("""
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done", flush=True))).start()
        return 1
    """)
    # Then the process waits for it, as Python's own exit does
    assert (proc.returncode, proc.stdout) == (1, "thread done\n")


def test_a_main_that_raises_exits_as_python_does():
    # Given a main() that fails
    proc = _program("""
        raise RuntimeError("a defect")
    """)
    # Then the traceback is printed and the exit code is Python's for an uncaught exception
    assert proc.returncode == 1 and "RuntimeError: a defect" in proc.stderr


def test_a_reader_that_goes_away_ends_the_program_quietly():
    # Given `qrdoctor checks` writing into a pipe whose reader closed it at once (`| head -0`)
    proc = subprocess.Popen([sys.executable, "-m", "qrdoctor", "checks"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_buffered())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    # Then it ends with success and says nothing of a broken pipe
    assert proc.wait(timeout=30) == 0 and err == "", err


def test_a_retrieve_run_as_a_program_leaves_no_temporary_files(sim_pacs_factory, tmp_path):
    # Given a PACS that delivers C-MOVE to qrdoctor's receiver, and a private temporary directory
    store_port = free_port()
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", store_port)})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # When `python -m qrdoctor check` retrieves and writes its JSON report to stdout
    proc = subprocess.run(
        [sys.executable, "-m", "qrdoctor", "check", f"{pacs.ae_title}@127.0.0.1:{pacs.port}", "--only",
         "retrieve.move", "--store-port", str(store_port), "--listen-host", "127.0.0.1", "--timeout", "5",
         "--json", "-"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(scratch)})
    # Then the report on stdout is whole, the images arrived, the exit code is the report's,
    # and the receiver's temporary files are gone
    report = json.loads(proc.stdout)
    move = next(c for c in report["checks"] if c["id"] == "retrieve.move")
    assert move["status"] == "pass" and move["facts"]["received"] > 0, move["summary"]
    assert proc.returncode == 0, proc.stderr
    assert list(scratch.iterdir()) == []
