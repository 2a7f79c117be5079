"""What the TUI says about a check in one line, where a check's own summary would mislead a
reader of the screen (issue 17): the summary is rebuilt from the check's facts, which stay as
the JSON report has them."""

from __future__ import annotations

import re
from collections.abc import Callable

from qrdoctor.core.model import CheckResult


def levels_summary(result: CheckResult, summary: str) -> str:
    """find.levels: ``STUDY:243+`` where qrdoctor stopped counting (its facts mark such a level
    ``complete: false``: the PACS had more matches than qrdoctor read), so the number is a
    lower bound, not what the PACS holds."""
    rows = (result.facts or {}).get("levels") or []
    models = list(dict.fromkeys(r.get("model") for r in rows))
    segments = summary.split("; ")
    if len(segments) != len(models):
        return summary  # not the shape this reads: say what the check said
    out = []
    for model, segment in zip(models, segments, strict=True):
        for row in rows:
            if row.get("model") == model and row.get("complete") is False and row.get("matches") is not None:
                pattern = rf"\b{re.escape(str(row.get('level')))}:{row['matches']}\b(?!\+)"
                segment = re.sub(pattern, f"{row.get('level')}:{row['matches']}+", segment, count=1)
        out.append(segment)
    return "; ".join(out)


# what each probe of association.ae_titles found, by its fact (True: the PACS refused the probe)
AE_PROBES = (("called_ae_checked", "wrong called AE"), ("calling_ae_checked", "unknown calling AE"))


def ae_titles_summary(result: CheckResult, summary: str) -> str:
    """association.ae_titles: what the PACS did with each probe ("wrong called AE accepted"),
    not "called AE not checked", which on a passed check reads as if qrdoctor skipped it."""
    facts = result.facts or {}
    if not all(key in facts for key, _ in AE_PROBES):
        return summary
    word = {True: "refused", False: "accepted", None: "no clear answer"}
    return ", ".join(f"{label} {word.get(facts[key], 'no clear answer')}" for key, label in AE_PROBES)


SUMMARIES: dict[str, Callable[[CheckResult, str], str]] = {
    "find.levels": levels_summary,
    "association.ae_titles": ae_titles_summary,
}


def shown_summary(result: CheckResult) -> str:
    """The check's summary as the screen shows it (its reason when it has no summary)."""
    text = result.summary or result.reason or ""
    rewrite = SUMMARIES.get(result.id)
    if rewrite is None or not result.summary:
        return text
    try:
        return rewrite(result, text)
    except (AttributeError, KeyError, TypeError):  # facts of another shape (an old report)
        return text
