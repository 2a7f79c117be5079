"""``qrdoctor diff`` reads reports a user was sent: untrusted JSON and HTML. Whatever they hold
-- huge, deeply nested, huge numbers, wrong types, markup and control characters in every string,
a fleet report pointing at files that are not reports -- the command ends with exit 2 and one
line, or compares safely (exit 0 or 1) with its text and Markdown escaped; never a traceback,
never a hang, never unbounded memory.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from pathlib import Path

import pytest

from qrdoctor.cli import main
from qrdoctor.reports.html import EMBED_ID

pytestmark = pytest.mark.timeout(120)

SAMPLE = Path(__file__).resolve().parent.parent / "sample_reports" / "demo.json"
MARK = "qrfz"
HOSTILE = [f"<script>{MARK}()</script>", f"<img src=x onerror={MARK}()>", f"[x](javascript:{MARK}())",
           f"\x1b[2J\x1b]0;{MARK}\x07", f"a\x00b\x9b31m{MARK}", f"\u202e{MARK}", f"| {MARK} |\n# h\r\n",
           f"![i](http://evil.invalid/{MARK}.png)", f"<http://evil.invalid/{MARK}>", "`" * 5 + MARK]
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MARKUP = re.compile(rf"<script>{MARK}|<img src=x|\]\(javascript:{MARK}|!\[i\]\(http|<http://evil")
_MD_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)


def _sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def _diff(capsys, old: Path, new: Path, *extra: str) -> tuple[int, str, str]:
    t0 = time.monotonic()
    rc = main(["diff", str(old), str(new), *extra])
    out, err = capsys.readouterr()
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in out + err
    if rc == 2:
        assert err.strip().count("\n") == 0 and err.startswith("qrdoctor: error:"), err
        assert not _CONTROL.search(err), repr(err)
    else:
        assert rc in (0, 1), (rc, err)
    return rc, out, err


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _poison(x: object, i: list[int]) -> object:
    """Every string but the schema, ids, enumerations and the target made hostile."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            keep = k in ("schema", "id", "stage", "status", "severity", "code", "target", "audience",
                         "started_at", "blocked_by")
            out[k] = v if keep else _poison(v, i)
        return out
    if isinstance(x, list):
        return [_poison(v, i) for v in x]
    if isinstance(x, str):
        i[0] += 1
        return x + HOSTILE[i[0] % len(HOSTILE)]
    return x


def test_hostile_strings_everywhere_compare_safely(tmp_path, capsys):
    old = _sample()
    new = _poison(copy.deepcopy(old), [0])
    # the facts the diff reads, made hostile and different, so that they are shown
    for c in new["checks"]:
        c["status"] = "fail" if c["status"] == "pass" else c["status"]
        c["findings"].append({"code": f"{MARK}<b>\x1b[31m", "severity": "fail", "summary": HOSTILE[0],
                              "explanation": HOSTILE[1], "fix": HOSTILE[2]})
        if isinstance(c.get("facts"), dict):
            for key in list(c["facts"])[:6]:
                c["facts"][key] = HOSTILE[hash(key) % len(HOSTILE)]
    a, b = _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new)
    for fmt in ((), ("--md",), ("--json",)):
        rc, out, _ = _diff(capsys, a, b, *fmt)
        assert rc in (0, 1, 2)
        if fmt == ("--json",):
            if rc != 2:
                json.loads(out)
            continue
        assert not _CONTROL.search(out), repr(out[:2000])
        if fmt == ("--md",):
            assert not _MARKUP.search(_MD_CODE.sub("", out)), out


CASES = ("deep-list", "deep-object", "deep-facts", "huge-int", "huge-int-facts", "top-list", "top-null",
         "top-string", "checks-string", "checks-ints", "target-list", "status-bogus", "findings-dict",
         "facts-string", "tool-string", "schema-hostile", "keys-hostile", "not-utf8", "empty", "nan", "bom")


def test_malformed_reports_are_one_line_or_a_safe_comparison(tmp_path, capsys):
    good = _write(tmp_path, "good.json", _sample())
    for case in CASES:
        _malformed(tmp_path, capsys, good, case)


def _malformed(tmp_path: Path, capsys, good: Path, case: str) -> None:
    d = _sample()
    text: str | bytes | None = None
    if case == "deep-list":
        text = "[" * 200_000 + "]" * 200_000
    elif case == "deep-object":
        text = '{"a":' * 200_000 + "1" + "}" * 200_000
    elif case == "deep-facts":
        text = json.dumps(d).replace('"facts": {', '"facts": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ",", 1)
    elif case == "huge-int":
        text = re.sub(r'"duration_s": [0-9.e-]+', '"duration_s": ' + "9" * 6000, json.dumps(d), count=1)
    elif case == "huge-int-facts":
        text = json.dumps(d).replace('"facts": {', '"facts": {"rtt_ms": ' + "1" * 100_000 + ",", 1)
    elif case == "top-list":
        text = "[]"
    elif case == "top-null":
        text = "null"
    elif case == "top-string":
        text = '"qrdoctor.report/1"'
    elif case == "checks-string":
        d["checks"] = "x"
    elif case == "checks-ints":
        d["checks"] = [5, None]
    elif case == "target-list":
        d["target"] = []
    elif case == "status-bogus":
        d["checks"][0]["status"] = "\x1b[2J" + MARK
    elif case == "findings-dict":
        d["checks"][0]["findings"] = {"a": 1}
    elif case == "facts-string":
        d["checks"][0]["facts"] = "x"
    elif case == "tool-string":
        d["tool"] = "x"
    elif case == "schema-hostile":
        d["schema"] = "qrdoctor.report/1\n\x1b[2J<script>"
    elif case == "keys-hostile":
        d["checks"][0]["bad\nkey\x1b[2J"] = 1
    elif case == "not-utf8":
        text = b"\xff\xfe{}"
    elif case == "empty":
        text = ""
    elif case == "nan":
        text = json.dumps(d).replace('"duration_s": ', '"duration_s": NaN, "x": ', 1)
    elif case == "bom":
        text = "\ufeff" + json.dumps(d)
    path = tmp_path / "bad.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if text is not None else json.dumps(d), encoding="utf-8")
    _diff(capsys, good, path)
    _diff(capsys, path, good, "--md")


def test_html_inputs(tmp_path, capsys):
    good = _write(tmp_path, "good.json", _sample())
    tag = f'<script type="application/json" id="{EMBED_ID}">'
    for text in ("<html>no report here</html>", f"<html>{tag}" + "[" * 200_000,
                 f"<html>{tag}" + "[" * 200_000 + "]" * 200_000 + "</script>", f"<html>{tag}{{\"a\": 1}}</script>",
                 f"<html>{tag}" + "1" * 10_000 + "</script>", "<" + "x" * 2_000_000,
                 f"<html>{tag}{json.dumps(_poison(_sample(), [0]))}</script>"):
        _diff(capsys, good, _write(tmp_path, "r.html", text))


def test_a_huge_report_is_refused_before_it_is_read(tmp_path, capsys):
    good = _write(tmp_path, "good.json", _sample())
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:
        fh.truncate(512 * 1024 * 1024)  # sparse: no disk used
    t0 = time.monotonic()
    rc, _, err = _diff(capsys, good, huge)
    assert rc == 2 and "too large" in err and time.monotonic() - t0 < 2


def _fleet(tmp_path: Path, name: str, nodes: list, **extra) -> Path:
    doc = {"schema": "qrdoctor.fleet/1", "inventory": "inv.toml", "started_at": "2026-01-01T00:00:00+00:00",
           "tool": {"version": "0"}, "nodes": nodes, **extra}
    return _write(tmp_path, name, doc)


@pytest.mark.timeout(60)
def test_hostile_fleet_reports(tmp_path, capsys):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    node = {"name": "A", "status": "pass", "echo_rtt_ms": 10}
    old = _fleet(tmp_path, "old.json", [node])
    cases = [
        _fleet(tmp_path, "n1.json", [node], tool="x"),
        _fleet(tmp_path, "n2.json", [node], tool=["x"], inventory={"a": HOSTILE[0]}, started_at=[1]),
        _fleet(tmp_path, "n3.json", [{"name": "A", "status": {"x": 1}, "echo_rtt_ms": "9" * 5000,
                                      "first_problem": {"code": HOSTILE[3]}}]),
        _fleet(tmp_path, "n4.json", [{"name": HOSTILE[0] + HOSTILE[3], "status": HOSTILE[1]}]),
        # node reports that are not files a report can be read from: a FIFO, a device, a folder
        _fleet(tmp_path, "n5.json", [{**node, "reports": {"json": str(fifo)}}]),
        _fleet(tmp_path, "n6.json", [{**node, "reports": {"json": "/dev/zero"}}]),
        _fleet(tmp_path, "n7.json", [{**node, "reports": {"json": "."}}]),
        _fleet(tmp_path, "n8.json", [{**node, "reports": ["json"]}]),
        _fleet(tmp_path, "n9.json", [{"name": f"N{i}", "status": "fail"} for i in range(10_000)]),
    ]
    old_with_reports = _fleet(tmp_path, "o2.json", [{**node, "reports": {"json": str(fifo)}}])
    for new in cases:
        for first in (old, old_with_reports):
            for fmt in ((), ("--md",)):
                rc, out, _ = _diff(capsys, first, new, *fmt)
                if rc != 2:
                    assert not _CONTROL.search(out), repr(out[:2000])
                    if fmt:
                        assert not _MARKUP.search(_MD_CODE.sub("", out)), out[:2000]
