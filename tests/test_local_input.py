"""Bad local input is refused up front: exit 2 and one line, never a traceback, never a value
silently made into another (issue 11, item 8).

Profiles, flags, paths and ports are each checked before any check runs. Conditions only an
unprivileged user meets (a privileged port, an unreadable file, a folder that cannot be searched)
are produced for real when the tests run unprivileged, and by making the operating system call
fail the same way when they run as root.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from qrdoctor.cli import main
from qrdoctor.core.target import Target, TargetError

from support.faults import closed_port

ROOT = os.geteuid() == 0


def refused(capsys, *args: str) -> str:
    """Run the command line in-process: it must exit 2 with one line on stderr."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors exit through the parser
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and err.count("\n") <= 2, err
    return err


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    path = tmp_path / "profiles.toml"
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(path))

    def write(content: bytes | str) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    return write


GOOD = 'called_ae = "PACS"\nhost = "127.0.0.1"\nport = 104\n'


@pytest.mark.parametrize("content, message", [
    (b'[profiles.a]\ncalled_ae = "PACS"\nhost = "h\xff\xfe"\nport = 104\n', "not UTF-8"),
    ("[profiles.a]\nx = " + "[" * 5000 + "]" * 5000 + "\n" + GOOD, "nested too deeply"),
    ('[profiles.a]\ncalled_ae = 123\nhost = "h"\nport = 104\n', "called_ae = 123"),
    ('[profiles.a]\ncalled_ae = "PACS"\nhost = 5\nport = 104\n', "host = 5"),
    ('[profiles.a]\n' + GOOD + 'timeout = "fast"\n', "timeout = 'fast'"),
    ('[profiles.a]\n' + GOOD + 'timeout = nan\n', "timeout"),
    ('[profiles]\na = "PACS@127.0.0.1:104"\n', "must be a table"),
    ('[profiles.a]\n' + GOOD + 'store_port = true\n', "store_port = true"),
    ('[profiles.a]\n' + GOOD.replace("104", "true") + '\n', "port = true"),
    ('[profiles.a]\n' + GOOD + 'probe_limit = true\n', "probe-limit"),
    ('[profiles.a]\ncalled_ae = "PACS"\nport = 104\n', "'host' is missing"),
    ('[profiles.a]\n' + GOOD.replace('"127.0.0.1"', '"' + "a" * 64 + '.example"') + '\n', "1 to 63 characters"),
    ('profiles = 3\n', "table of named nodes"),
], ids=['invalid-utf8', '5000-deep-array', 'called_ae-123', 'host-5', 'timeout-fast', 'timeout-nan', 'profile-is-a-string', 'store_port-true', 'port-true', 'option-true', 'host-missing', 'host-label-64', 'profiles-not-a-table'])
def test_bad_profiles_are_one_line_and_exit_2(profiles, capsys, content, message):
    profiles(content)
    err = refused(capsys, "check", "a")
    assert message in err


def test_store_port_true_never_becomes_port_1():
    with pytest.raises(TargetError):
        Target(host="127.0.0.1", port=104, called_ae="PACS", store_port=True)
    with pytest.raises(TargetError):
        Target(host="127.0.0.1", port=True, called_ae="PACS")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e9", "fast"])
def test_bad_timeouts_are_refused(capsys, value):
    err = refused(capsys, "check", "PACS@127.0.0.1:104", f"--timeout={value}")
    assert "timeout" in err


def test_a_64_character_host_label_is_refused_not_a_unicode_error(capsys):
    err = refused(capsys, "check", f"PACS@{'a' * 64}.example:104")
    assert "1 to 63 characters" in err and "UnicodeError" not in err


def test_keep_files_on_a_file_or_where_nothing_can_be_written(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    target = f"PACS@127.0.0.1:{closed_port()}"
    err = refused(capsys, "check", target, "--store-port", "0", "--keep-files", str(afile))
    assert "--keep-files" in err and "not a folder" in err
    err = refused(capsys, "check", target, "--store-port", "0", "--keep-files", "/proc/qrdoctor-kept")
    assert "--keep-files /proc/qrdoctor-kept" in err
    # a folder that can be written is fine, and the test leaves nothing behind
    kept = tmp_path / "kept"
    assert main(["check", target, "--store-port", "0", "--keep-files", str(kept), "--only", "network.tcp"]) == 1
    assert not kept.exists()


def _make_unreadable(path, monkeypatch) -> None:
    """Make ``path`` unreadable: by its mode, or (for root, who reads anything) at open()."""
    if not ROOT:
        os.chmod(path, 0o000)
        return
    import builtins

    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


def test_an_unreadable_tls_certificate(capsys, tmp_path, monkeypatch):
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    _make_unreadable(cert, monkeypatch)
    err = refused(capsys, "check", "PACS@127.0.0.1:104", "--tls-cert", str(cert))
    assert "--tls-cert" in err and "cannot be read" in err
    monkeypatch.undo()
    assert "no such file" in refused(capsys, "check", "PACS@127.0.0.1:104", "--tls-cert", str(tmp_path))


def test_a_busy_store_port_is_exit_2_before_the_run(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err = refused(capsys, "check", f"PACS@127.0.0.1:{closed_port()}", "--store-port", str(port),
                      "--listen-host", "127.0.0.1")
    assert "already in use" in err and str(port) in err


def test_a_privileged_store_port_is_exit_2(capsys, monkeypatch):
    if ROOT:
        real_bind = socket.socket.bind

        def bind(self, address):
            if address[1] == 104:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_bind(self, address)

        monkeypatch.setattr(socket.socket, "bind", bind)
    err = refused(capsys, "check", f"PACS@127.0.0.1:{closed_port()}", "--store-port", "104")
    assert "administrator rights" in err and "--store-port" in err


def test_the_store_port_is_not_checked_when_no_retrieve_runs(capsys):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["check", f"PACS@127.0.0.1:{closed_port()}", "--store-port", str(port), "--only", "network.tcp"])
    assert code == 1


def test_a_report_path_that_cannot_be_written(capsys, tmp_path, monkeypatch):
    # a folder that cannot be searched (as `--json /root/x` for a normal user)
    target = f"PACS@127.0.0.1:{closed_port()}"
    locked = tmp_path / "locked"
    locked.mkdir()
    if ROOT:
        real_stat = os.stat

        def stat(path, *args, **kwargs):
            if os.fspath(path).startswith(str(locked)):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)
    else:
        locked.chmod(0o000)
    try:
        assert "permission denied" in refused(capsys, "check", target, "--json", str(locked / "sub" / "r.json"))
    finally:
        monkeypatch.undo()
        locked.chmod(0o700)
    # a folder where no file can be created
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if str(kwargs.get("dir", "")) == str(tmp_path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert "permission denied" in refused(capsys, "check", target, "--md", str(tmp_path / "r.md"))


def test_a_report_that_fails_while_written_is_exit_2_not_a_traceback(tmp_path):
    # Given /dev/full: opening works, writing fails with "no space left on device"
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    proc = subprocess.run([sys.executable, "-m", "qrdoctor", "check", f"PACS@127.0.0.1:{closed_port()}",
                           "--only", "network.tcp", "--md", "/dev/full"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left" in proc.stderr.lower()
