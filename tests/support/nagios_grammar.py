"""A strict reader of Monitoring Plugins output, written from the guidelines
(https://www.monitoring-plugins.org/doc/guidelines.html, "Plugin Output" and "Performance data"),
independently of qrdoctor's writer.

- The first line is ``TEXT`` or ``TEXT | PERFDATA``; further lines are long text (a later ``|``
  may start more performance data). qrdoctor's first line is ``QRDOCTOR STATE - text``.
- PERFDATA is space-separated ``'label'=value[UOM];[warn];[crit];[min];[max]``: the label is
  quoted with single quotes when it holds spaces (a quote inside written as two), and never holds
  ``=``; value is ``[-0-9.]`` or ``U``; UOM one of ``s ms us % B KB MB TB c`` or none; warn and
  crit are ranges ``[@][start:][end]`` (start may be ``~``); min and max numbers; trailing
  unfilled fields may be dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STATES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
_NUM = r"-?(?:\d+(?:\.\d+)?|\.\d+)"
RANGE = re.compile(rf"^@?(?:(?:~|{_NUM})?:)?(?:{_NUM})?$")
DATUM = re.compile(
    rf"(?P<label>'(?:[^'=]|'')+'|[^\s'=]+)=(?P<value>{_NUM}|U)(?P<uom>s|ms|us|%|B|KB|MB|TB|c)?"
    rf"(?:;(?P<warn>[^;\s]*))?(?:;(?P<crit>[^;\s]*))?(?:;(?P<min>(?:{_NUM})?))?(?:;(?P<max>(?:{_NUM})?))?"
    r"(?=\s|$)")
FIRST = re.compile(r"^QRDOCTOR (?P<state>OK|WARNING|CRITICAL|UNKNOWN) - (?P<text>[^|\n]*?)(?: \| (?P<perf>.*))?$")


class GrammarError(AssertionError):
    pass


@dataclass
class Datum:
    label: str
    value: float | None
    uom: str
    warn: str
    crit: str
    minimum: str
    maximum: str


@dataclass
class PluginOutput:
    state: str
    text: str
    perfdata: dict[str, Datum] = field(default_factory=dict)
    long_text: list[str] = field(default_factory=list)


def parse_perfdata(text: str) -> dict[str, Datum]:
    out: dict[str, Datum] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = DATUM.match(text, pos)
        if not m:
            raise GrammarError(f"not performance data at {text[pos:pos + 40]!r}")
        label = m.group("label")
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        for part in ("warn", "crit"):
            rng = m.group(part) or ""
            if rng and not RANGE.match(rng):
                raise GrammarError(f"{label}: {part} {rng!r} is not a range")
        value = None if m.group("value") == "U" else float(m.group("value"))
        out[label] = Datum(label, value, m.group("uom") or "", m.group("warn") or "", m.group("crit") or "",
                           m.group("min") or "", m.group("max") or "")
        pos = m.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return out


def parse_plugin_output(output: str) -> PluginOutput:
    lines = output.rstrip("\n").split("\n")
    if not lines or not lines[0]:
        raise GrammarError("no output")
    m = FIRST.match(lines[0])
    if not m:
        raise GrammarError(f"first line is not 'QRDOCTOR STATE - text [| perfdata]': {lines[0][:120]!r}")
    parsed = PluginOutput(m.group("state"), m.group("text"), parse_perfdata(m.group("perf") or ""))
    for line in lines[1:]:
        text, bar, perf = line.partition("|")
        parsed.long_text.append(text)
        if bar:
            parsed.perfdata.update(parse_perfdata(perf))
    return parsed
