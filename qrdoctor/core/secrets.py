"""Secrets out of every result: passwords, tokens and Authorization header values.

Unlike patient data (redacted when a report is written, kept with ``--include-phi``), a secret
is never kept anywhere: the runner removes the run's secrets (an option model lists them with a
``secrets()`` method, e.g. the DICOMweb password and token) from each check's result as it
concludes, from the recorded observations and from the command line, before any observer, view,
report or bundle sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qrdoctor.core.model import CheckResult

MASK = "[secret removed]"
MIN_SECRET_LEN = 4  # shorter strings would be replaced all over the text; the client never logs them


class SecretScrubber:
    """Replaces every occurrence of the given secrets in strings and nested JSON-like data."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET_LEN}
        self.secrets = sorted(found, key=len, reverse=True)  # the longest first: "Basic xyz" before "xyz"

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, s: str) -> str:
        for secret in self.secrets:
            if secret in s:
                s = s.replace(secret, MASK)
        return s

    def data(self, obj: Any) -> Any:
        """A copy of JSON-like data with the secrets removed from every string and key
        (iterative: no depth limit applies)."""
        holder: list[Any] = [None]
        stack: list[tuple[Any, Any, Any]] = [(obj, holder, 0)]
        while stack:
            value, parent, key = stack.pop()
            if isinstance(value, str):
                parent[key] = self.text(value)
            elif isinstance(value, dict):
                parent[key] = new = {}
                for k, v in value.items():
                    nk = self.text(k) if isinstance(k, str) else k
                    new[nk] = None
                    stack.append((v, new, nk))
            elif isinstance(value, list | tuple):
                parent[key] = new = [None] * len(value)
                stack.extend((v, new, i) for i, v in enumerate(value))
            else:
                parent[key] = value
        return holder[0]

    def result(self, result: CheckResult) -> CheckResult:
        if not self.secrets:
            return result
        data = result.model_dump(mode="json")
        cleaned = self.data(data)
        return result if cleaned == data else CheckResult.model_validate(cleaned)


def run_secrets(option_values: Iterable[object]) -> list[str]:
    """The secrets the run's option values declare (each model's ``secrets()``, when it has one)."""
    out: list[str] = []
    for value in option_values:
        fn = getattr(value, "secrets", None)
        if callable(fn):
            out.extend(s for s in fn() if isinstance(s, str))
    return out
