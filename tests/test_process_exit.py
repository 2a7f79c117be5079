"""How the qrdoctor process ends: exit handlers run, output flushed, the heap not torn down.

``qrdoctor`` and ``python -m qrdoctor`` end through :func:`qrdoctor.cli.exit_process`, which skips
the interpreter's own shutdown (tens of milliseconds of freeing objects one by one). These tests
hold it to what that shutdown guaranteed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from support.ports import free_port


def _python(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_exit_handlers_run_buffered_output_is_written_and_the_code_kept():
    # Given a program with an exit handler and output still in its buffers
    proc = _python("""
        import atexit, sys
        from qrdoctor.cli import exit_process
        atexit.register(lambda: print("handler ran"))
        print("report", end=" ")
        print("to people", end="", file=sys.stderr)
        exit_process(3)
    """)
    # Then both streams are complete, the handler ran, and the exit code is the one given
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "report handler ran\n", "to people")


def test_a_thread_still_running_is_waited_for_as_by_an_ordinary_exit():
    # Given a non-daemon thread that has not finished when the program ends
    proc = _python("""
        import threading, time
        from qrdoctor.cli import exit_process
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done", flush=True))).start()
        exit_process(1)
    """)
    # Then the process waits for it, as Python's own exit does
    assert (proc.returncode, proc.stdout) == (1, "thread done\n")


def test_a_reader_that_goes_away_ends_the_program_quietly():
    # Given `qrdoctor checks` writing into a pipe whose reader closed it at once (`| head -0`)
    proc = subprocess.Popen([sys.executable, "-m", "qrdoctor", "checks"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
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
