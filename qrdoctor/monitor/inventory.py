"""The fleet's inventory: the profiles TOML, with groups and per-node check selections.

::

    [groups.archives]
    checks = ["association.echo", "find.levels"]  # check ids, or a family: "find" = find.*

    [profiles.VNA]
    called_ae = "VNA1"
    host = "10.1.2.4"
    port = 104
    group = "archives"

    [profiles.MAINPACS]
    called_ae = "PACS"
    host = "10.1.2.3"
    port = 104
    store_port = 11113
    group = "pacs"                              # no [groups.pacs] table: every check

A node's table is a saved profile (the same keys and validation as ``qrdoctor check NAME``:
``called_ae``, ``host``, ``port``, ``calling_ae``, ``move_ae``, ``store_port``, ``advertise``,
``timeout``, the TLS keys and the checks' option values) plus ``group`` and ``checks``. A key that
is none of these is refused, naming the node. The checks a node runs: the command line's
``--only``, else the node's ``checks``, else its group's, else all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrdoctor.core.target import (
    PROFILE_TARGET_KEYS,
    Target,
    TargetError,
    TLSOptions,
    profile_model,
    read_toml,
)

NODE_KEYS = frozenset({"group", "checks"})
MAX_INVENTORY_BYTES = 16 * 1024 * 1024  # 10,000 nodes take about 1 MB
GROUP_KEYS = frozenset({"checks"})


class InventoryError(TargetError):
    """The inventory cannot be used: one line saying where and why (exit 2)."""


@dataclass
class Node:
    name: str
    target: Target
    group: str | None = None
    checks: list[str] | None = None  # None: every check
    settings: dict[str, Any] = field(default_factory=dict)  # the profile's table (option values too)

    @property
    def retrieves(self) -> bool:
        """Whether the node's selection holds a retrieve check (it needs the store port)."""
        from qrdoctor.core.catalog import requirement_closure

        ids = self.checks if self.checks is not None else None
        if ids is None:
            return True
        return any(c.startswith("retrieve.") for c in requirement_closure(ids))


def expand_checks(words: Any, where: str) -> list[str]:
    """Check ids from a list of ids and families (``find`` = every ``find.*`` check)."""
    from qrdoctor.core.catalog import CHECKS

    if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or not words:
        raise InventoryError(f"{where}: checks must be a non-empty list of check ids, e.g. "
                             '["association.echo", "find"]')
    ids = [c.id for c in CHECKS]
    out: list[str] = []
    for word in words:
        w = word.strip()
        matched = [i for i in ids if i == w or i.split(".")[0] == w]
        if not matched:
            raise InventoryError(f"{where}: unknown check {w!r} in checks (see: qrdoctor checks)")
        out.extend(m for m in matched if m not in out)
    return out


def _keys(keys: list[str]) -> str:
    """Key names as written in an error: quoted, so that one holding a line break or a control
    character stays on the one line of the message; at most five."""
    shown = ", ".join(k if k.isprintable() else repr(k) for k in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _option_names() -> set[str]:
    from qrdoctor.core.option_fields import catalog_fields

    return {f.name for f in catalog_fields()}


def _validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", lambda: [])()[:3]
    parts = []
    for err in errors:
        key = ".".join(str(x) for x in err.get("loc", ())) or "table"
        if err.get("type") == "missing":
            parts.append(f"the key {key!r} is missing")
        else:
            got = err.get("input")
            shown = repr(got) if isinstance(got, int | float | str) and len(repr(got)) < 40 else type(got).__name__
            parts.append(f"{key} = {shown}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or str(exc)


def _node(name: str, table: Any, groups: dict[str, list[str]], known: set[str], overrides: dict) -> Node:
    where = f"node {name!r}"
    if not isinstance(table, dict):
        raise InventoryError(f"{where} must be a table of settings ([profiles.{name}])")
    unknown = sorted(set(table) - known)
    if unknown:
        raise InventoryError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {_keys(unknown)} "
                             "(a node takes the keys of a saved profile, group and checks)")
    from pydantic import ValidationError

    profile = {k: v for k, v in table.items() if k not in NODE_KEYS}
    try:
        profile_model().model_validate(profile)
    except ValidationError as exc:
        raise InventoryError(f"{where}: {_validation_message(exc)}") from None
    group = table.get("group")
    if group is not None and not isinstance(group, str):
        raise InventoryError(f"{where}: group must be text, the name of a group")
    if "checks" in table:
        checks: list[str] | None = expand_checks(table["checks"], where)
    else:
        checks = groups.get(group) if group else None
    try:
        options = {k: table[k] for k in ("calling_ae", "move_ae", "store_port", "advertise", "timeout")
                   if table.get(k) is not None}
        if table.get("tls"):
            options["tls"] = TLSOptions(ca_file=table.get("tls_ca"), cert_file=table.get("tls_cert"),
                                        key_file=table.get("tls_key"), verify=table.get("tls_verify", True))
        options.update({k: v for k, v in overrides.items() if v is not None})
        target = Target(host=table["host"], port=table["port"], called_ae=table["called_ae"], **options)
    except TargetError as exc:
        raise InventoryError(f"{where}: {exc}") from None
    return Node(name=name, target=target, group=group, checks=checks, settings=profile)


def load_inventory(path: str | Path, only: list[str] | None = None, **overrides: Any) -> list[Node]:
    """The nodes of the inventory at ``path``, validated; ``only`` replaces every node's selection;
    ``overrides`` (e.g. ``timeout``) replace the profiles' values."""
    path = Path(path)
    if not path.is_file():
        raise InventoryError(f"Inventory {path}: no such file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InventoryError(f"Inventory {path}: cannot be read ({exc.strerror or exc})") from None
    if size > MAX_INVENTORY_BYTES:
        raise InventoryError(f"Inventory {path}: too large ({size} bytes; qrdoctor reads up to "
                             f"{MAX_INVENTORY_BYTES // (1024 * 1024)} MB)")
    try:
        data = read_toml(path)
    except TargetError as exc:
        raise InventoryError(str(exc).replace("the profiles file", "the inventory", 1)) from None
    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise InventoryError(f"Inventory {path}: no nodes; each node is a [profiles.NAME] table")
    raw_groups = data.get("groups", {})
    if not isinstance(raw_groups, dict):
        raise InventoryError(f"Inventory {path}: [groups] must be a table of named groups")
    groups: dict[str, list[str]] = {}
    for gname, gtable in raw_groups.items():
        if not isinstance(gtable, dict):
            raise InventoryError(f"group {gname!r} must be a table ([groups.{gname}])")
        unknown = sorted(set(gtable) - GROUP_KEYS)
        if unknown:
            raise InventoryError(f"group {gname!r}: unknown key {_keys(unknown)} (a group takes checks)")
        if "checks" in gtable:
            groups[gname] = expand_checks(gtable["checks"], f"group {gname!r}")
    known = set(PROFILE_TARGET_KEYS) | NODE_KEYS | _option_names()
    nodes = [_node(str(name), table, groups, known, overrides) for name, table in profiles.items()]
    if only:
        for n in nodes:
            n.checks = list(only)
    return nodes
