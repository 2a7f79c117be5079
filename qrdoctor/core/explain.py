"""Long explanations of finding codes, kept as data: one Markdown file per code.

Each file ``explanations/<code>.md`` starts with ``# <code>: <title>``; its first paragraph is
the short "why this usually happens" text every finding of that code carries; the rest is the
long explanation that ``qrdoctor explain CODE`` prints. A retired code keeps its file with a
line ``Retired:`` saying so, and is never reused. The list of codes itself is
:mod:`qrdoctor.core.codes`.

Checks build their findings through :func:`finding`, looked up on this module at call time
(``explain.finding(...)``), so the test suite can observe every finding built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from qrdoctor.core import codes

if TYPE_CHECKING:  # the model (pydantic) is imported when a finding is built, not for `explain`
    from qrdoctor.core.model import Action, Finding, Severity


class UnknownCodeError(KeyError):
    pass


@dataclass(frozen=True)
class Explanation:
    code: str
    title: str
    short: str
    text: str  # the whole file
    retired: bool = False


def _parse(code: str, text: str) -> Explanation:
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith(f"# {code}:"):
        raise ValueError(f"explanation file for {code!r} must start with '# {code}: <title>'")
    title = lines[0].split(":", 1)[1].strip()
    body = "\n".join(lines[1:]).strip()
    short = body.split("\n\n", 1)[0].replace("\n", " ").strip()
    return Explanation(code, title, short, text.strip() + "\n", retired="\nRetired:" in text)


@cache
def explanations() -> dict[str, Explanation]:
    out: dict[str, Explanation] = {}
    for entry in resources.files("qrdoctor.core.explanations").iterdir():
        name = entry.name
        if name.endswith(".md"):
            code = name[:-3]
            out[code] = _parse(code, entry.read_text(encoding="utf-8"))
    return out


def get(code: str) -> Explanation:
    try:
        return explanations()[code]
    except KeyError:
        raise UnknownCodeError(code) from None


def finding(code: str, severity: Severity, summary: str, fix: str | list[Action],
            explanation: str | None = None, evidence: dict[str, Any] | None = None) -> Finding:
    """Build a finding; a code not in :data:`codes.CODES` is a programming error and fails loudly.

    ``fix`` is the list of :func:`~qrdoctor.core.model.actions` (who changes what); a plain
    string is kept for findings that have no one to act (the JSON ``fix`` is then that string)."""
    from qrdoctor.core.model import Finding

    if code not in codes.CODES:
        raise UnknownCodeError(f"{code} is not a current finding code (see qrdoctor/core/codes.py)")
    exp = get(code)
    return Finding(
        code=code,
        severity=severity,
        summary=summary,
        explanation=explanation or exp.short,
        fix=" ".join(a.text for a in fix) if isinstance(fix, list) else fix,
        actions=fix if isinstance(fix, list) else [],
        evidence=evidence or {},
    )
