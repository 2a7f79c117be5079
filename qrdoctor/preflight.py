"""Local resources, checked before a run: where reports go, where received files are kept, the
port our temporary Store SCP will listen on.

A problem with any of them is the user's or this computer's, not the PACS's: the command line
reports it in one line and exits 2 before any check runs, instead of a traceback after a long run
(an unwritable ``--json``) or an ``error`` result (a busy store port).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path


class LocalResourceError(Exception):
    """A local path or port qrdoctor cannot use; one line for the user, exit status 2."""


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return (exc.strerror or str(exc)).lower()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _probe_folder(folder: Path) -> None:
    """Create and remove a file in the folder: the one test that answers "can I write here"."""
    import tempfile  # (only when a folder is checked: not on every run's start)

    fd, tmp = tempfile.mkstemp(prefix=".qrdoctor-", suffix=".probe", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def check_report_path(path: str | None) -> None:
    """A report can be written to ``path`` (``-`` is standard output)."""
    if not path or path == "-":
        return
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        st = _stat(p)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise LocalResourceError(f"cannot write the report to {path}: it is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):  # a device or a pipe: written through
            if not os.access(p, os.W_OK):
                raise LocalResourceError(f"cannot write the report to {path}: permission denied")
            return
        parent_st = _stat(parent)
        if parent_st is None or not stat.S_ISDIR(parent_st.st_mode):
            raise LocalResourceError(f"cannot write the report to {path}: the folder {parent} does not exist")
        if st is not None and not os.access(p, os.W_OK):
            raise LocalResourceError(f"cannot write the report to {path}: permission denied")
        _probe_folder(parent)
    except OSError as exc:
        raise LocalResourceError(f"cannot write the report to {path}: {_why(exc)}") from None


def check_keep_folder(path: str | None) -> None:
    """Received objects can be kept in the folder ``path`` (``--keep-files``): it is a folder,
    or can be made one, and files can be written there. A folder made for the test is removed
    again (the retrieve makes it, private, when it runs)."""
    if not path:
        return
    folder = Path(path)
    try:
        st = _stat(folder)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise LocalResourceError(f"--keep-files {path}: it is a file, not a folder")
        if st is None:
            folder.mkdir(mode=0o700)
            try:
                _probe_folder(folder)
            finally:
                folder.rmdir()
        else:
            _probe_folder(folder)
    except OSError as exc:
        raise LocalResourceError(f"--keep-files {path}: received files cannot be written there "
                                 f"({_why(exc)})") from None


def check_store_port(host: str, port: int) -> None:
    """Our temporary Store SCP can listen on ``host:port`` (port 0: any port, nothing to check).
    Bound the way the Store SCP binds (address reuse on), then released at once."""
    if not port:
        return
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1)
    except UnicodeError:
        raise LocalResourceError(f"the Store SCP cannot listen on {where}: {host!r} is not a host name") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "the port is already in use on this computer; choose another with --store-port"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            why = ("ports below 1024 need administrator rights; choose a port above 1023 with "
                   "--store-port (and register it at the PACS)")
        elif exc.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME) or isinstance(exc, socket.gaierror):
            why = f"{host} is not an address of this computer (see --listen-host)"
        else:
            why = _why(exc)
        raise LocalResourceError(f"the Store SCP for the retrieve checks cannot listen on {where}: {why}") from None
