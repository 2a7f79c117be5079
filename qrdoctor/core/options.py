"""Typed options: each check declares the options it reads, as a pydantic model.

A field of an :class:`Options` model is at once a command-line flag (``probe_limit`` becomes
``--probe-limit``), a field of the TUI's connection form and a key of a saved profile; its
``description`` is the help text. Field names are unique across all checks, so one flat mapping
(``{"probe_limit": 150}``) describes every option of a run. Checks read their own model with
``ctx.option(MatchLimitOptions)``; nothing travels through an untyped dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

O = TypeVar("O", bound="Options")  # noqa: E741


class Options(BaseModel):
    """Base class of a check's declared options (frozen, unknown keys refused, no NaN or
    infinity in a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SchedulingOptions(Options):
    """How the run itself proceeds (not a check's option): every run has these."""

    max_associations: int = Field(
        2, ge=1, le=16,
        description="At most this many associations with the PACS at once (default 2): checks whose "
                    "requirements are met run side by side up to this bound; when the PACS turns "
                    "one of them away while another of ours is open, that check is run again on "
                    "its own, the report says so, and the rest of the run takes one at a time. "
                    "1 runs the checks one after another.")


class OptionError(ValueError):
    """A bad option value; the CLI reports it in one line with exit code 2."""


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(x) for x in err.get("loc", ())) or "option"
        parts.append(f"--{name.replace('_', '-')}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts)


class RunOptions:
    """The options of one run: one validated instance per declared :class:`Options` model."""

    def __init__(self, values: Iterable[Options] = ()) -> None:
        self._values: dict[type[Options], Options] = {type(v): v for v in values}

    def get(self, cls: type[O]) -> O:
        value = self._values.get(cls)
        return value if value is not None else cls()  # type: ignore[return-value]

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any] | None, models: Iterable[type[Options]],
                  strict: bool = False) -> RunOptions:
        """Build every model from one flat mapping; a key no model declares is an error.

        ``strict`` takes the values as they are, without conversion: values read from a file (a
        saved profile) must already be of their option's type (``true`` is not the number 1).
        """
        flat = {k: v for k, v in (flat or {}).items() if v is not None}
        models = list(dict.fromkeys(models))
        declared = {name for m in models for name in m.model_fields}
        unknown = sorted(set(flat) - declared)
        if unknown:
            raise OptionError(f"unknown option {', '.join(unknown)}")
        values = []
        for m in models:
            mine = {k: v for k, v in flat.items() if k in m.model_fields}
            try:
                values.append(m.model_validate(mine, strict=strict))
            except ValidationError as exc:
                raise OptionError(_message(exc)) from None
        return cls(values)

    def phi(self) -> dict[str, str]:
        """Option values that identify a patient (value -> kind), for redaction from the start of
        a run: a field declares it with ``json_schema_extra={"phi": KIND}`` (e.g. --patient-id)."""
        out: dict[str, str] = {}
        for v in self._values.values():
            for name, info in type(v).model_fields.items():
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                value = getattr(v, name)
                if extra.get("phi") and isinstance(value, str) and value.strip():
                    out[value.strip()] = str(extra["phi"])
        return out

    def flat(self) -> dict[str, Any]:
        """Every option value set differently from its default, JSON-ready (for the report)."""
        out: dict[str, Any] = {}
        for v in self._values.values():
            out.update(v.model_dump(mode="json", exclude_defaults=True))
        return out
