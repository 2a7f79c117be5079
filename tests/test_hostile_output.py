"""Peer text never leaks patient data and never drives the user's terminal or a report reader
(issue 11, items 4 and 5).

The peer is written from scratch at the PDU and DIMSE level: it accepts any association, answers
C-ECHO, and answers every C-FIND with one match (a patient qrdoctor registers: a two-character
Patient ID and a birth date) and then a failure whose ErrorComment holds patients qrdoctor never
saw — in DICOM PN notation, as "Lastname, Firstname", with an ID, a birth date written
``01.01.1970``, an accession number — plus the registered ID and birth date inside a sentence,
an OSC window-title sequence, a CSI clear-screen, a Markdown link to ``javascript:`` and a remote
image. What reaches stdout (``--details``), the TUI's detail view, JSON, Markdown, HTML and every
file of the bundle is then searched for all of it.
"""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from markdown_it import MarkdownIt

from qrdoctor.cli import main
from qrdoctor.core.escape import for_terminal, json_text, markdown_inline
from qrdoctor.core.model import CheckResult, Finding, Severity, Status
from qrdoctor.core.target import Target
from qrdoctor.reports import render

OSC_TITLE = "\x1b]0;PWNED\x07"
CSI_CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"
# Patients qrdoctor never registered, and the registered one's ID and birth date in a sentence.
UNREGISTERED = ("Patient DOE^JANE (ID 4711-X, born 01.01.1970, acc A20240017) is locked; "
                "Roe, Richard too; 7Q born 01.01.1970 waits. ")
HOSTILE_TAIL = f"{OSC_TITLE}{CSI_CLEAR}{C1_CSI} see [x](javascript:alert(1)) ![i](http://evil.example/p.png)"
ERROR_COMMENT = UNREGISTERED + HOSTILE_TAIL
# The match the peer returns: qrdoctor registers these values as patient data.
REGISTERED = {"PatientName": "QRZ^ZEDDA", "PatientID": "7Q", "PatientBirthDate": "19700101",
              "AccessionNumber": "ACC777"}
NEVER = ["DOE", "JANE", "4711", "A20240017", "Roe", "Richard", "QRZ", "ZEDDA", "7Q", "19700101",
         "1970", "ACC777"]
CASE_SENSITIVE = {"7Q"}  # as a word; case-insensitively it would hit hex tokens and words


# -- the peer ------------------------------------------------------------------------------------
def _element(group: int, elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if group == 0 and elem in (0x0002,) else b" "
    return struct.pack("<HHI", group, elem, len(value)) + value


def _command(fields: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_element(0x0000, e, v) for e, v in sorted(fields))
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def _us(n: int) -> bytes:
    return struct.pack("<H", n)


def _pdata(context_id: int, payload: bytes, command: bool) -> bytes:
    pdv = struct.pack(">IBB", len(payload) + 2, context_id, (0x01 if command else 0x00) | 0x02) + payload
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


def _parse_elements(data: bytes) -> dict[tuple[int, int], bytes]:
    out, pos = {}, 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        out[(group, elem)] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return out


class HostilePeer:
    """Accepts every association and presentation context (Implicit VR Little Endian)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()

    def serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        command = b""
        try:
            with conn:
                while True:
                    kind, _, length = struct.unpack(">BBI", _recv_exact(conn, 6))
                    body = _recv_exact(conn, length)
                    if kind == 0x01:
                        conn.sendall(self._accept(body))
                    elif kind == 0x04:
                        command = self._pdata(conn, body, command)
                    elif kind == 0x05:
                        conn.sendall(struct.pack(">BBI", 0x06, 0, 4) + b"\x00" * 4)
                        return
                    else:
                        return
        except (ConnectionError, OSError, struct.error):
            return

    def _accept(self, rq: bytes) -> bytes:
        items, pos = [], 68
        while pos + 4 <= len(rq):
            kind, _, length = struct.unpack_from(">BBH", rq, pos)
            if kind == 0x20:
                items.append(_item(0x21, bytes([rq[pos + 4], 0, 0, 0]) + _item(0x40, b"1.2.840.10008.1.2")))
            pos += 4 + length
        user = (_item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4.5.6.7")
                + _item(0x55, b"HOSTILE_PACS_1"))
        body = (rq[:68] + _item(0x10, b"1.2.840.10008.3.1.1.1") + b"".join(items) + _item(0x50, user))
        return struct.pack(">BBI", 0x02, 0, len(body)) + body

    def _pdata(self, conn: socket.socket, body: bytes, command: bytes) -> bytes:
        pos = 0
        while pos + 6 <= len(body):
            length, context_id, header = struct.unpack_from(">IBB", body, pos)
            fragment = body[pos + 6:pos + 4 + length]
            pos += 4 + length
            if not header & 0x01:
                continue  # a data set: the C-FIND identifier, not read
            command += fragment
            if header & 0x02:
                self._answer(conn, context_id, _parse_elements(command))
                command = b""
        return command

    def _answer(self, conn: socket.socket, context_id: int, cmd: dict) -> None:
        field = struct.unpack("<H", cmd[(0, 0x0100)])[0]
        msg_id = cmd[(0, 0x0110)]
        sop = cmd.get((0, 0x0002), b"")
        if field == 0x0030:  # C-ECHO-RQ
            conn.sendall(_pdata(context_id, _command([(0x0002, sop), (0x0100, _us(0x8030)), (0x0120, msg_id),
                                                      (0x0800, _us(0x0101)), (0x0900, _us(0))]), True))
        elif field == 0x0020:  # C-FIND-RQ: one match, then a failure with the hostile comment
            conn.sendall(_pdata(context_id, _command([(0x0002, sop), (0x0100, _us(0x8020)), (0x0120, msg_id),
                                                      (0x0800, _us(0x0000)), (0x0900, _us(0xFF00))]), True))
            conn.sendall(_pdata(context_id, _match(), False))
            conn.sendall(_pdata(context_id, _command([
                (0x0002, sop), (0x0100, _us(0x8020)), (0x0120, msg_id), (0x0800, _us(0x0101)),
                (0x0900, _us(0xC000)), (0x0902, ERROR_COMMENT.encode("latin-1"))]), True))
        elif field == 0x0FFF:  # C-CANCEL-RQ: nothing to cancel any more
            return


def _match() -> bytes:
    values = [((0x0008, 0x0050), REGISTERED["AccessionNumber"]), ((0x0008, 0x0052), "STUDY"),
              ((0x0010, 0x0010), REGISTERED["PatientName"]), ((0x0010, 0x0020), REGISTERED["PatientID"]),
              ((0x0010, 0x0030), REGISTERED["PatientBirthDate"]), ((0x0020, 0x000D), "1.2.3.4.5.6.7.8")]
    return b"".join(_element(g, e, v.encode("ascii")) for (g, e), v in values)


@contextmanager
def hostile_peer() -> Iterator[int]:
    peer = HostilePeer()
    thread = threading.Thread(target=peer.serve, daemon=True)
    thread.start()
    try:
        yield peer.port
    finally:
        peer.stop.set()
        peer.sock.close()
        thread.join(2)


# -- what must never be found ------------------------------------------------------------------------
def leaks(text: str) -> list[str]:
    found = []
    for value in NEVER:
        if value in CASE_SENSITIVE:
            if re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text):
                found.append(value)
        elif value.casefold() in text.casefold():
            found.append(value)
    if "01.01." in text:
        found.append("01.01.")
    return found


def controls(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in text if ord(c) < 0x20 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F})


def live_markdown(md: str) -> list[str]:
    """Links, images, HTML and bare addresses a Markdown renderer would make live."""
    found = []
    for token in MarkdownIt("commonmark").parse(md):
        for t in [token, *(token.children or [])]:
            if t.type in ("link_open", "image", "html_inline", "html_block"):
                found.append(f"{t.type} {t.attrs}")
            if t.type == "text" and re.search(r"(?i)[a-z]+://|www\.", t.content):
                found.append(f"bare address in {t.content!r}")
    return found


def run_hostile(tmp_path, *extra: str) -> tuple[int, str, dict[str, str]]:
    paths = {fmt: tmp_path / f"r.{fmt}" for fmt in ("json", "md", "html")}
    bundle = tmp_path / "r.zip"
    with hostile_peer() as port:
        args = ["check", f"HOSTILE@127.0.0.1:{port}", "--only", "find.levels", "--timeout", "2",
                "--details", "--bundle", str(bundle), *extra]
        for fmt, path in paths.items():
            args += [f"--{fmt}", str(path)]
        out = io.StringIO()
        import contextlib
        with contextlib.redirect_stdout(out):
            code = main(args)
    files = {fmt: path.read_text(encoding="utf-8") for fmt, path in paths.items()}
    with zipfile.ZipFile(bundle) as zf:
        files.update({f"bundle/{n}": zf.read(n).decode("utf-8") for n in zf.namelist()})
    return code, out.getvalue(), files


# -- the tests ---------------------------------------------------------------------------------------
def test_hostile_error_comments_leak_no_patient_and_drive_no_terminal(tmp_path):
    # Given a PACS whose ErrorComments carry patients qrdoctor never registered, the registered
    # patient's ID and birth date inside a sentence, and terminal and Markdown injection
    code, stdout, files = run_hostile(tmp_path)
    # Then the run completed and found the failing C-FIND with its comment
    report = json.loads(files["json"])
    levels = next(c for c in report["checks"] if c["id"] == "find.levels")
    assert code == 1 and levels["status"] == "fail", levels["summary"]
    assert "is locked" in json.dumps(levels)  # the comment still reads where it holds no patient
    # And no patient value survives in stdout (--details) or in any report or bundle file
    for name, text in {"stdout": stdout, **files}.items():
        assert leaks(text) == [], (name, leaks(text))
    # And no escape sequence or control character reaches stdout or a text file
    for name, text in {"stdout": stdout, "md": files["md"], "transcript": files["bundle/transcript.txt"]}.items():
        assert controls(text) == [], (name, controls(text))
    # And JSON keeps them only as escapes
    assert controls(files["json"]) == [] and controls(files["bundle/report.json"]) == []
    assert live_markdown(files["md"]) == []


def test_with_include_phi_the_text_is_kept_but_still_cannot_inject(tmp_path):
    # Given the same PACS, and the user asked for patient data
    code, stdout, files = run_hostile(tmp_path, "--include-phi")
    assert code == 1
    # Then the comment is there, unredacted ...
    assert "DOE^JANE" in files["json"] and "javascript:alert(1)" in files["json"]
    # ... but nothing in it drives the terminal or turns into a live link, image or HTML
    assert controls(stdout) == [] and controls(files["md"]) == [] and controls(files["json"]) == []
    assert "PWNED" in files["md"]  # shown, harmlessly, as text
    assert live_markdown(files["md"]) == [], live_markdown(files["md"])
    html = files["html"]
    assert re.findall(r"""<img\b|\bsrc\s*=""", html, re.I) == []
    assert all(href.startswith("#check-") for href in re.findall(r"""\bhref\s*=\s*["']?([^"'\s>]*)""", html, re.I))
    assert controls(html) == []


@pytest.mark.anyio
async def test_the_tui_detail_view_shows_no_escape_sequence_and_no_patient():
    from qrdoctor.tui.app import QRDoctorApp

    # Given the TUI diagnosing the hostile PACS
    with hostile_peer() as port:
        app = QRDoctorApp(Target(host="127.0.0.1", port=port, called_ae="HOSTILE", timeout=2.0),
                          only=["find.levels"])
        async with app.run_test(size=(100, 40)) as pilot:
            screen = app.run_screen
            for _ in range(400):
                if screen.report is not None:
                    break
                await pilot.pause(0.05)
            assert screen.report is not None
            # When the user opens the failed check's details
            screen.check_list.focus()
            screen.check_list.index = [c.id for c in screen.checks].index("find.levels")
            await pilot.pause()
            shown = screen.detail.render().plain
            rows = " ".join(str(label.render()) for label in screen.query("Label"))
    # Then the comment is there, redacted, without its escape sequences
    assert "is locked" in shown and "Facts" in shown
    assert controls(shown) == [] and controls(rows) == []
    assert "\x1b" not in shown and leaks(shown) == [], leaks(shown)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the sinks, one by one ---------------------------------------------------------------------------
@pytest.mark.parametrize("hostile", [
    OSC_TITLE, CSI_CLEAR, C1_CSI, "\x1bP1$qm\x1b\\", "\x1b_payload\x1b\\", "\x9d0;title\x9c", "\x1bc",
    "\x1b]52;c;ZXZpbA==\x07", "a\rFAKE", "\u202eevil", "\x00\x08\x7f", "\x1b]8;;http://x\x07link\x1b]8;;\x07",
])
def test_terminal_sink_removes_every_escape_sequence_and_control(hostile):
    out = for_terminal(f"before {hostile} after")
    assert controls(out) == [] and "\x1b" not in out and "\u202e" not in out
    assert out.startswith("before ") and out.endswith(" after")
    assert "\n" not in for_terminal("one\ntwo") and for_terminal("one\ntwo", multiline=True) == "one\ntwo"


def test_markdown_sink_leaves_no_live_link_image_or_html():
    text = ("[x](javascript:alert(1)) ![i](http://evil.example/p.png) <http://evil.example> "
            "<img src=x onerror=alert(1)> www.evil.example [ref]: http://evil.example \x1b]0;t\x07")
    md = markdown_inline(text)
    assert live_markdown(md) == [], live_markdown(md)
    assert controls(md) == [] and "evil.example" in md  # still readable


def test_json_sink_escapes_c1_and_format_characters_without_changing_the_value():
    doc = json.dumps({"s": "a\x9b31m\u2028\u202eb"}, ensure_ascii=False)
    safe = json_text(doc)
    assert json.loads(safe) == json.loads(doc) and controls(safe) == [] and "\u202e" not in safe


def test_every_format_of_a_report_with_control_characters_is_clean():
    check = CheckResult(
        id="find.levels", stage="query", title="C-FIND", status=Status.FAIL,
        summary=f"PACS said {OSC_TITLE}hello{CSI_CLEAR}", facts={"peer": f"x{C1_CSI}y"},
        findings=[Finding(code="find-level-error", severity=Severity.FAIL, summary=f"s{OSC_TITLE}",
                          explanation="e", fix="f [x](javascript:alert(1))", evidence={"v": "\x1b[31m"})],
        transcript=[f"line {OSC_TITLE} one\nforged line"],
    )
    from test_reports import build_report

    report = build_report([check])
    for fmt in ("json", "md", "html"):
        assert controls(render(report, fmt)) == [], fmt
    with zipfile.ZipFile(io.BytesIO(render(report, "bundle"))) as zf:
        for name in zf.namelist():
            assert controls(zf.read(name).decode("utf-8")) == [], name
        transcript = zf.read("transcript.txt").decode()
    assert "forged line" in transcript and "\nforged line" not in transcript
    assert live_markdown(render(report, "md")) == []
