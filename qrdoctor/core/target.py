"""What to diagnose: the PACS address and titles, our own titles, ports and timeouts."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from qrdoctor.dicom.compat import validate_ae

DEFAULT_CALLING_AE = "QRDOCTOR"
DEFAULT_STORE_PORT = 11113
DEFAULT_TIMEOUT = 10.0


class TargetError(ValueError):
    """Bad user input describing a target; the CLI reports it in one line with exit code 2."""


def check_ae_title(value: str, what: str) -> str:
    """Return the AE title stripped of padding, or raise TargetError saying what is wrong."""
    if value is None or not value.strip():
        raise TargetError(f"{what} is empty; an AE title needs 1 to 16 characters")
    ok, why = validate_ae(value)
    if not ok:
        raise TargetError(f"{what} {value!r} is not a valid AE title: it {why}")
    return value.strip()


def check_port(value: int | str, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise TargetError(f"{what} {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise TargetError(f"{what} {port} is out of range (1-65535)")
    return port


@dataclass(frozen=True)
class TLSOptions:
    """How to secure the connection: whom to trust, and our own certificate if the PACS wants one."""

    ca_file: str | None = None  # certificate authority for the PACS; None: the system's trust store
    cert_file: str | None = None  # our client certificate (PEM), when the PACS requires one
    key_file: str | None = None  # its private key (PEM); may be inside cert_file
    verify: bool = True  # verify the PACS's certificate chain and name

    def __post_init__(self) -> None:
        for what, path in (("--tls-ca", self.ca_file), ("--tls-cert", self.cert_file), ("--tls-key", self.key_file)):
            if path and not os.path.isfile(path):
                raise TargetError(f"{what} {path}: no such file")
        if self.key_file and not self.cert_file:
            raise TargetError("--tls-key needs --tls-cert")

    def describe(self) -> dict:
        return {"ca_file": self.ca_file, "client_certificate": self.cert_file, "verify": self.verify}


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    called_ae: str
    calling_ae: str = DEFAULT_CALLING_AE
    move_ae: str | None = None
    store_port: int = DEFAULT_STORE_PORT
    advertise: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    tls: TLSOptions | None = None  # DICOM over TLS to the PACS

    def __post_init__(self) -> None:
        object.__setattr__(self, "called_ae", check_ae_title(self.called_ae, "The PACS AE title"))
        object.__setattr__(self, "calling_ae", check_ae_title(self.calling_ae, "The calling AE title"))
        move = self.move_ae if self.move_ae is not None else self.calling_ae
        object.__setattr__(self, "move_ae", check_ae_title(move, "The move destination AE title"))
        object.__setattr__(self, "port", check_port(self.port, "The PACS port"))
        # Port 0 lets the operating system choose the Store SCP port (used by tests).
        if self.store_port != 0:
            object.__setattr__(self, "store_port", check_port(self.store_port, "The store port"))
        if not self.host:
            raise TargetError("The PACS host is empty")
        if not self.timeout or self.timeout <= 0:
            raise TargetError(f"The timeout must be a positive number of seconds, not {self.timeout!r}")

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.called_ae}@{host}:{self.port}"

    def replace(self, **changes: object) -> Target:
        return dataclasses.replace(self, **changes)


_TARGET_RE = re.compile(r"^(?P<ae>[^@]+)@(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[^:]+)$")


def parse_target(text: str, **options: object) -> Target:
    """Parse ``AE@host:port`` (``AE@[::1]:104`` for IPv6) into a Target."""
    m = _TARGET_RE.match(text.strip())
    if not m:
        raise TargetError(
            f"Target {text!r} is not of the form AE@host:port (for example ORTHANC@127.0.0.1:4242)"
        )
    host = m.group("v6") or m.group("host")
    port = check_port(m.group("port"), "The PACS port")
    return Target(host=host, port=port, called_ae=m.group("ae"), **options)  # type: ignore[arg-type]


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "qrdoctor"


def profiles_path() -> Path:
    return Path(os.environ.get("QRDOCTOR_PROFILES") or config_dir() / "profiles.toml")


_PROFILE_KEYS = {"calling_ae", "move_ae", "store_port", "advertise", "timeout"}
# Every key of a profile that describes the target; the checks' option values use other names.
PROFILE_TARGET_KEYS = frozenset({"called_ae", "host", "port", "tls", "tls_ca", "tls_cert", "tls_key",
                                 "tls_verify", *_PROFILE_KEYS})


def load_profiles(path: Path | None = None) -> dict[str, dict]:
    path = path or profiles_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TargetError(f"Cannot read the profiles file {path}: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise TargetError(f"{path}: [profiles] must be a table of named nodes")
    return profiles


def saved_profile(name: str, path: Path | None = None) -> dict:
    """The table of the saved profile ``name``, or TargetError naming the profiles there are."""
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none saved"
        raise TargetError(
            f"{name!r} is neither AE@host:port nor a saved profile (profiles: {known})"
        )
    return profiles[name]


def profile_settings(text: str, path: Path | None = None) -> dict:
    """Everything a target text's saved profile holds (the checks' option values among it);
    empty for ``AE@host:port``."""
    return {} if "@" in text else saved_profile(text, path)


def target_from_profile(name: str, overrides: dict[str, object], path: Path | None = None) -> Target:
    p = saved_profile(name, path)
    try:
        options = {k: p[k] for k in _PROFILE_KEYS if k in p}
        if p.get("tls"):
            options["tls"] = TLSOptions(ca_file=p.get("tls_ca"), cert_file=p.get("tls_cert"),
                                        key_file=p.get("tls_key"), verify=p.get("tls_verify", True))
        options.update({k: v for k, v in overrides.items() if v is not None})
        return Target(host=p["host"], port=p["port"], called_ae=p["called_ae"], **options)
    except KeyError as exc:
        raise TargetError(f"Profile {name!r} lacks the key {exc.args[0]!r}") from None


def resolve_target(text: str, **overrides: object) -> Target:
    """A target from ``AE@host:port`` or from a saved profile name; overrides win when given."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if "@" in text:
        return parse_target(text, **given)
    return target_from_profile(text, given)
