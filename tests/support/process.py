"""Running a server process for a test: start it in its own process group with its log in a
temporary directory, wait until it is ready, stop it (and everything it forked), read its log.

:class:`ServerProcess` is what the Orthanc and dcmqrscp wrappers share; each says how to write
its configuration, which command to run and when it is ready.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from support.ports import LOOPBACK
from support.tools import peer_env

START_ATTEMPTS = 3  # a port may be taken between choosing and binding it: choose again


class PeerStartError(RuntimeError):
    """A real peer did not start (or did not become ready) in time."""


# Servers created and not yet stopped: killed (and their temp dirs removed) at interpreter exit
# as a safety net for a test that forgot to stop one.
_live: set[ServerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        try:
            server.stop(grace=0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def wait_for_tcp(port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    """True once 127.0.0.1:``port`` accepts a connection; False at ``deadline`` or if ``proc``
    exits first."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tail_of(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (or why there are none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def stop_process_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group ``proc`` leads, wait ``grace`` s, then SIGKILL the group."""
    if proc.poll() is None and grace > 0:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Kill whatever is left in the group: the leader if it ignored SIGTERM, and (for
    # dcmqrscp) children forked per association.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - would need a stuck kernel
        pass


def process_group_alive(pgid: int) -> bool:
    """True while any process (zombies excluded) is still in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the command name, which is in parentheses and may contain spaces
        rest = stat.rsplit(")", 1)[1].split()
        state, pgrp = rest[0], int(rest[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


class ServerProcess(ABC):
    """A server in its own process group, with a temporary directory for config, data and log.

    Subclasses say how to start: :meth:`write_config`, :meth:`command`, :meth:`ready` (called
    with a deadline), :meth:`start_failure` (the error text) and :meth:`pick_ports`.
    """

    STOP_GRACE = 5.0
    kind = "server"
    host = LOOPBACK

    def __init__(self, tmp_prefix: str, log_name: str, start_timeout: float) -> None:
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None  # of the last started process (kept after stop)
        self.store_port: int | None = None  # reserved for our Store SCP, set by fixtures
        self.corpus: list[Any] = []  # what a fixture loaded, for expectations
        self.tmpdir = Path(tempfile.mkdtemp(prefix=tmp_prefix))
        self.log_path = self.tmpdir / log_name
        _live.add(self)

    # -- what a subclass provides -----------------------------------------------------------
    @abstractmethod
    def check_installed(self) -> None:
        """Raise :class:`PeerStartError` when the server's binary is missing."""

    @abstractmethod
    def write_config(self) -> None:
        """Write the configuration file the next start uses (ports may have changed)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the server."""

    @abstractmethod
    def ready(self, deadline: float) -> bool:
        """Wait until the started server answers; False if it exits or ``deadline`` passes."""

    @abstractmethod
    def start_failure(self, exit_code: int | None, cmd: list[str]) -> str:
        """The error text when a start attempt failed (with the log's tail)."""

    @abstractmethod
    def pick_ports(self) -> None:
        """Choose new ports after one turned out to be taken."""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Any:
        """Start the server and return once it is ready; retry when a port was taken."""
        if self.proc is not None:
            return self
        self.check_installed()
        last_error = ""
        for _attempt in range(START_ATTEMPTS):
            self.write_config()
            cmd = self.command()
            self.launch(cmd)
            if self.ready(time.monotonic() + self.start_timeout):
                return self
            code = self.proc.poll() if self.proc is not None else None
            if self.proc is not None:
                stop_process_group(self.proc, grace=0)
                self.proc = None
            last_error = self.start_failure(code, cmd)
            if code is None or "already in use" not in tail_of(self.log_path, 200):
                break
            self.pick_ports()
        raise PeerStartError(last_error)

    def launch(self, cmd: list[str]) -> None:
        """Start ``cmd`` in its own process group, logging to log_path (one log per attempt)."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.tmpdir, env=peer_env(), start_new_session=True,
            )
        self.pid = self.proc.pid

    def stop(self, grace: float | None = None, keep_files: bool = False) -> None:
        """SIGTERM the server's process group (SIGKILL after ``grace`` s), remove the temp dir."""
        if self.proc is not None:
            stop_process_group(self.proc, self.STOP_GRACE if grace is None else grace)
            self.proc = None
        _live.discard(self)
        if not keep_files:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def kill(self) -> None:
        """Stop at once (SIGKILL, no graceful shutdown) and remove the temp dir."""
        self.stop(grace=0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return tail_of(self.log_path, lines)
