"""The checks' declared options as fields a person fills in: command-line flags, form inputs.

Each field of an :class:`~qrdoctor.core.options.Options` model becomes one :class:`OptionField`:
its flag (``probe_limit`` -> ``--probe-limit``), a label for a form, the kind of value it takes
(from the annotation: int, float, str or bool, possibly optional), its default and its help text
(the field's ``description``). The TUI builds its inputs from :func:`option_fields`; the CLI
builds its flags from :func:`catalog_fields`, the same fields read from the static table in
:mod:`qrdoctor.core.catalog`, so it lists every check's options without importing the checks.
Both turn what was typed into values with :meth:`DeclaredField.convert`; the option models
themselves then validate the values (ranges, UIDs, folders).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from qrdoctor.core.options import OptionError, Options, RunOptions

KINDS = (bool, int, float, str)  # bool first: a bool is also an int
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
SECONDS_SUFFIX = "_s"  # a field named like stall_s holds seconds


def kind_of(annotation: Any) -> tuple[type, bool]:
    """The value type of an annotation (int, float, str or bool) and whether None is allowed."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if args else [annotation]
    if len(inner) != 1 or inner[0] not in KINDS:
        raise TypeError(f"an option must be int, float, str or bool (optionally None), not {annotation!r}")
    return inner[0], optional


@dataclass(frozen=True)
class DeclaredField:
    """A declared option as the command line offers it (no model: see :class:`OptionField`)."""

    name: str
    kind: type  # int, float, str or bool
    optional: bool
    default: Any
    description: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def in_seconds(self) -> bool:
        return self.kind is float and self.name.endswith(SECONDS_SUFFIX)

    @property
    def label(self) -> str:
        """A short label for a form: ``probe_limit`` -> "Probe limit", ``stall_s`` -> "Stall (s)"."""
        words = self.name[: -len(SECONDS_SUFFIX)] if self.in_seconds else self.name
        words = words.replace("_", " ")
        return words[:1].upper() + words[1:] + (" (s)" if self.in_seconds else "")

    @property
    def default_text(self) -> str | None:
        """The default as it would be typed, or None when the default is "not set"."""
        return None if self.default is None else self.text(self.default)

    @property
    def help(self) -> str:
        default = f" (default {self.default_text})" if self.default_text is not None else ""
        return (self.description or self.name.replace("_", " ")) + default

    def text(self, value: Any) -> str:
        """A value as it is typed into a form (the empty string for "not set")."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def convert(self, text: str | None) -> Any:
        """What was typed, as a value of the field's kind; empty means "not set" (None).

        Raises OptionError with a short message when the text is not of the field's kind.
        """
        text = (text or "").strip()
        if not text:
            return None
        if self.kind is bool:
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise OptionError(f"{text!r} is not yes or no")
        if self.kind is int:
            try:
                return int(text)
            except ValueError:
                raise OptionError(f"{text!r} is not a whole number") from None
        if self.kind is float:
            try:
                return float(text)
            except ValueError:
                raise OptionError(f"{text!r} is not a number") from None
        return text


@dataclass(frozen=True)
class OptionField(DeclaredField):
    """A field of an option model, with the model that validates it."""

    model: type[Options] = field(kw_only=True)

    def parse(self, text: str | None) -> Any:
        """:meth:`convert`, then the model's own validation of this one value."""
        value = self.convert(text)
        if value is None:
            return None
        try:
            return getattr(self.model(**{self.name: value}), self.name)
        except ValidationError as exc:
            raise OptionError(_first_message(exc)) from None


def _first_message(exc: ValidationError) -> str:
    err = exc.errors()[0] if exc.errors() else {}
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def option_fields(models: Iterable[type[Options]] | None = None) -> list[OptionField]:
    """The fields of the given option models (default: every model a check declares), in order."""
    if models is None:
        from qrdoctor.core.registry import option_models

        models = option_models()
    out: list[OptionField] = []
    for model in models:
        for name, info in model.model_fields.items():
            kind, optional = kind_of(info.annotation)
            out.append(OptionField(model=model, name=name, kind=kind, optional=optional,
                                   default=info.default, description=info.description or ""))
    return out


def catalog_fields() -> list[DeclaredField]:
    """Every declared option, from the static table (:data:`qrdoctor.core.catalog.OPTIONS`),
    in the order of :func:`option_fields`, without importing any check."""
    from qrdoctor.core.catalog import OPTIONS

    kinds = {k.__name__: k for k in KINDS}
    return [DeclaredField(name=e.name, kind=kinds[e.kind], optional=e.optional, default=e.default,
                          description=e.description) for e in OPTIONS]


def option_owners(names: Iterable[str]) -> list[str]:
    """The checks whose option models declare these options (run order; none for the run's own)."""
    from qrdoctor.core.catalog import CHECKS, OPTIONS

    owners = {e.check for e in OPTIONS if e.name in set(names) and e.check}
    return [c.id for c in CHECKS if c.id in owners]


def declared_values(table: Mapping[str, Any], fields: Iterable[DeclaredField]) -> dict[str, Any]:
    """The option values in a table that also holds other settings (a saved profile)."""
    return {f.name: table[f.name] for f in fields if table.get(f.name) is not None}


def options_from_texts(texts: Mapping[str, str], fields: Iterable[OptionField]) -> RunOptions:
    """RunOptions from what was typed into a form, one text per field (empty: the default).

    Raises OptionError naming the field's flag, like the command line.
    """
    fields = list(fields)
    flat: dict[str, Any] = {}
    for f in fields:
        try:
            flat[f.name] = f.convert(texts.get(f.name, ""))
        except OptionError as exc:
            raise OptionError(f"{f.flag}: {exc}") from None
    return RunOptions.from_flat(flat, list(dict.fromkeys(f.model for f in fields)))
