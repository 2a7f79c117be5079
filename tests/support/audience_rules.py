"""The rules every fix text follows (issue 12, audiences): a fix is split by who acts on it --
the PACS administrator, the workstation's configuration, users, the person running qrdoctor --
and only the tester's part names qrdoctor's command-line options."""

from __future__ import annotations

import re

from qrdoctor.core.model import Audience, Finding

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def audience_problems(f: Finding) -> list[str]:
    """What is wrong with one finding's fix ([] when it follows the rules)."""
    if f.fix.strip() and not f.actions:
        return [f"{f.code}: fix not split by audience: {f.fix[:120]}"]
    return [f"{f.code}: the {a.audience.value} part names a qrdoctor option: {a.text[:160]}"
            for a in f.actions if a.audience is not Audience.TESTER and OPTION.search(a.text)]
