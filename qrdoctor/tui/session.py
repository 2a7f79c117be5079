"""What the TUI keeps between sessions and offers from saved state (issue 17): the theme, in a
small settings file next to profiles.toml, and a "Run profile NAME" command per saved profile."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from qrdoctor.core.options import OptionError, RunOptions
from qrdoctor.core.target import (
    Target,
    TargetError,
    load_profiles,
    profiles_path,
    target_from_profile,
)

__all__ = ["OptionError", "ProfileRun", "TargetError", "profile_names", "profile_run", "read_settings",
           "settings_path", "write_settings"]

SETTINGS_NAME = "tui.toml"


def settings_path() -> Path:
    """The TUI's settings file: next to the profiles file (``$XDG_CONFIG_HOME/qrdoctor`` unless
    ``QRDOCTOR_PROFILES`` puts that elsewhere)."""
    return profiles_path().with_name(SETTINGS_NAME)


def read_settings(path: Path) -> dict:
    """The settings saved at ``path``; nothing when the file is missing or unreadable (the TUI
    then starts with its defaults: a broken settings file must not keep it from starting)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_settings(path: Path, settings: dict[str, str]) -> str | None:
    """Save string settings as TOML at ``path``; None, or one line saying why it could not."""
    lines = ["# qrdoctor TUI settings, written by the TUI"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in sorted(settings.items())]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        return f"Cannot save the TUI settings to {path}: {exc.strerror or exc}"
    return None


@dataclass
class ProfileRun:
    """A saved profile ready to run: its target and the checks' options it sets."""

    name: str
    target: Target
    options: RunOptions


def profile_names() -> list[str]:
    """The saved profiles' names (none when the profiles file cannot be read)."""
    try:
        return sorted(load_profiles())
    except TargetError:
        return []


def profile_run(name: str) -> ProfileRun:
    """The target and options of a saved profile, as ``qrdoctor check NAME`` reads them.

    Raises TargetError or OptionError with the reason it cannot be run."""
    from qrdoctor.core.option_fields import declared_values, option_fields
    from qrdoctor.core.registry import option_models

    target = target_from_profile(name, {})
    saved = load_profiles().get(name, {})
    models = option_models()
    values = declared_values(saved, option_fields(models))
    options = RunOptions.from_flat(values, models, strict=True)
    return ProfileRun(name, target, options)

