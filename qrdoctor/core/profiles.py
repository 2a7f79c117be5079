"""Saving and deleting named node profiles in the profiles TOML file.

Reading stays in :mod:`qrdoctor.core.target` (``load_profiles``, ``target_from_profile``); this module
writes the same file, ``[profiles.NAME]`` tables with ``called_ae``, ``host``, ``port``, the
optional keys ``calling_ae``, ``move_ae``, ``store_port``, ``advertise``, ``timeout``
and the TLS keys, and the checks' option values under their own names (such as
``probe_limit``; the same names as the command-line flags). Anything else in the file (other
tables, unknown keys) is kept; comments are not, because the file is rewritten from its parsed
content.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qrdoctor.core.target import Target, TargetError, profiles_path, read_toml

HEADER = "# qrdoctor node profiles: `qrdoctor check NAME` and the TUI's connection form use them.\n"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class ProfileError(TargetError):
    """A profile cannot be saved or deleted (bad name, unreadable or unwritable file)."""


# ---- a small TOML writer ----------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string, with every character TOML requires escaped."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _emit_table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        if lines:
            lines.append("")
        lines.append("[" + ".".join(toml_key(p) for p in path) + "]")
    for key, value in scalars.items():
        lines.append(f"{toml_key(str(key))} = {toml_value(value)}")
    for key, sub in tables.items():
        _emit_table(lines, [*path, str(key)], sub)


def dumps(data: dict[str, Any]) -> str:
    """TOML text for a document of tables, strings, numbers, booleans and arrays."""
    lines: list[str] = []
    _emit_table(lines, [], data)
    return "\n".join(lines) + "\n"


# ---- profiles --------------------------------------------------------------------------------


def check_profile_name(name: str) -> str:
    """The profile name stripped, or ProfileError: it must be usable as ``qrdoctor check NAME``."""
    name = (name or "").strip()
    if not name:
        raise ProfileError("The profile name is empty")
    if "@" in name:
        raise ProfileError(f"The profile name {name!r} contains '@', which marks an AE@host:port target")
    if any(ord(c) < 0x20 for c in name):
        raise ProfileError(f"The profile name {name!r} contains control characters")
    if len(name) > 64:
        raise ProfileError("The profile name is longer than 64 characters")
    return name


def profile_from_target(target: Target) -> dict[str, Any]:
    """The profile table for a target: required keys first, unset options left out."""
    entry: dict[str, Any] = {"called_ae": target.called_ae, "host": target.host, "port": target.port,
                             "calling_ae": target.calling_ae}
    if target.move_ae and target.move_ae != target.calling_ae:
        entry["move_ae"] = target.move_ae
    entry["store_port"] = target.store_port
    if target.advertise:
        entry["advertise"] = target.advertise
    entry["timeout"] = float(target.timeout)
    tls = target.tls
    if tls is not None:
        entry["tls"] = True
        for key, attr in (("tls_ca", "ca_file"), ("tls_cert", "cert_file"), ("tls_key", "key_file")):
            if getattr(tls, attr):
                entry[key] = getattr(tls, attr)
        if not tls.verify:  # type: ignore[attr-defined]
            entry["tls_verify"] = False
    return entry


def _read_document(path: Path) -> dict[str, Any]:
    try:
        if not path.exists():
            return {}
        data = read_toml(path)
    except OSError as exc:
        raise ProfileError(f"Cannot read the profiles file {path}: {exc.strerror or exc}") from None
    except TargetError as exc:  # not UTF-8, not TOML, nested too deeply
        raise ProfileError(str(exc)) from None
    if not isinstance(data.get("profiles", {}), dict):
        raise ProfileError(f"{path}: [profiles] must be a table of named nodes")
    return data


def _write_document(path: Path, data: dict[str, Any]) -> None:
    text = HEADER + dumps(data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".profiles-", suffix=".toml", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ProfileError(f"Cannot write the profiles file {path}: {exc}") from None


def save_profile(name: str, target: Target, path: Path | None = None,
                 options: Mapping[str, Any] | None = None) -> Path:
    """Save (or replace) the profile ``name`` for ``target`` and the checks' option values set
    for it (``RunOptions.flat()``: the values that differ from the defaults); returns the file."""
    name = check_profile_name(name)
    path = path or profiles_path()
    data = _read_document(path)
    profiles = data.setdefault("profiles", {})
    entry = profile_from_target(target)
    clashes = sorted(set(options or {}) & set(entry))
    if clashes:
        raise ProfileError(f"option name(s) {', '.join(clashes)} clash with the target's keys")
    entry.update({k: v for k, v in (options or {}).items() if v is not None})
    profiles[name] = entry
    _write_document(path, data)
    return path


def delete_profile(name: str, path: Path | None = None) -> bool:
    """Delete the profile ``name``; False when there was no such profile."""
    path = path or profiles_path()
    data = _read_document(path)
    profiles = data.get("profiles", {})
    if name not in profiles:
        return False
    del profiles[name]
    _write_document(path, data)
    return True
