"""The HTTP ``Warning`` header (RFC 7234 §5.5), as DICOMweb servers use it.

PS3.18 has servers report truncated QIDO answers and ignored parameters with warn-code 299,
e.g. ``299 host:8080 "There are 12 additional results that can be requested"``. Real servers
also send the text unquoted (``299 {service}: There are ...``, the PS3.18 wording taken
literally), so an unquoted text is read to the end of the value instead of being dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_VALUES = 32
MAX_TEXT = 1024

_ADDITIONAL = re.compile(r"there\s+(?:are|is)\s+([0-9]{1,12})\s+additional\s+results?", re.I)
_CODE_AGENT = re.compile(r"[ \t]*([1-9][0-9]{2})[ \t]+([^ \t\",]+)[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_DATE = re.compile(r'[ \t]*"[^"]*"')


@dataclass(frozen=True)
class WarningValue:
    code: int
    agent: str
    text: str
    additional: int | None = None  # N from "There are N additional results"

    @property
    def mentions_additional_results(self) -> bool:
        """The text says more results exist, with or without a number (older PS3.18 wording:
        "The number of results exceeded the maximum supported by the server")."""
        t = self.text.lower()
        return "additional result" in t or "exceeded the maximum" in t


def _text_info(text: str) -> tuple[str, int | None]:
    text = text[:MAX_TEXT]
    m = _ADDITIONAL.search(text)
    return text, (int(m.group(1)) if m else None)


def _parse_one_header(value: str) -> list[WarningValue]:
    out: list[WarningValue] = []
    i = 0
    while i < len(value) and len(out) < MAX_VALUES:
        m = _CODE_AGENT.match(value, i)
        if m is None:
            comma = value.find(",", i)
            if comma < 0:
                break
            i = comma + 1
            continue
        code, agent = int(m.group(1)), m.group(2).rstrip(":")
        j = m.end()
        q = _QUOTED.match(value, j)
        if q:
            text = re.sub(r"\\(.)", r"\1", q.group(1), flags=re.S)
            j = q.end()
            d = _DATE.match(value, j)
            if d:
                j = d.end()
            rest = value.find(",", j)
            i = len(value) if rest < 0 else rest + 1
        else:
            # unquoted text: everything up to the end of the header value
            text = value[j:].strip()
            i = len(value)
        text, additional = _text_info(text)
        out.append(WarningValue(code=code, agent=agent, text=text, additional=additional))
    return out


def parse_warning(values: list[str]) -> list[WarningValue]:
    """Every warning-value in the given ``Warning`` header values (one entry per header line;
    a line may hold several comma-separated values). Bounded; malformed pieces are skipped."""
    out: list[WarningValue] = []
    for value in values:
        if len(out) >= MAX_VALUES:
            break
        out.extend(_parse_one_header(value or "")[: MAX_VALUES - len(out)])
    return out
