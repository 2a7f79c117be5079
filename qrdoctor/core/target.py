"""What to diagnose: the PACS address and titles, our own titles, ports and timeouts.

Everything here is local input — flags, form fields, a saved profile — and is validated before
anything runs: a bad value is a :class:`TargetError` (exit 2, one line), never a traceback or a
value silently made into another (``store_port = true`` is not port 1, ``timeout = nan`` is not a
timeout, a host name with a 64-character label is not a host).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

# pydantic is imported when a profile is checked, not when this module is: `qrdoctor --version`,
# `--help`, `explain` and `checks` import it (the CLI's types). AE titles are checked here, by
# the rule pynetdicom applies to the titles of our association requests (see ae_title_problem),
# so that `check --only network.tcp` reaches its first probe without importing pynetdicom.

DEFAULT_CALLING_AE = "QRDOCTOR"
DEFAULT_STORE_PORT = 11113
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 3600.0


class TargetError(ValueError):
    """Bad user input describing a target; the CLI reports it in one line with exit code 2."""


def check_ae_title(value: str, what: str) -> str:
    """Return the AE title stripped of padding, or raise TargetError saying what is wrong."""
    if value is not None and not isinstance(value, str):
        raise TargetError(f"{what} must be text, not {_type_name(value)} {value!r}")
    if value is None or not value.strip():
        raise TargetError(f"{what} is empty; an AE title needs 1 to 16 characters")
    why = ae_title_problem(value)
    if why:
        raise TargetError(f"{what} {value!r} is not a valid AE title: it {why}")
    return value.strip()


def ae_title_problem(value: str) -> str:
    """Why ``value`` is not a valid AE title, or ``""`` when it is.

    The rule (and the wording) of pynetdicom's ``validate_ae``, which pynetdicom applies to the
    titles of every association request it builds for us: at most 16 characters, counting
    padding; ASCII only; no control character (C0 or DEL) and no backslash (PS3.5 table 6.2-1,
    AE). A title accepted here is never refused later, inside a check. Written out instead of
    imported because importing pynetdicom costs a tenth of a second before the first probe;
    ``tests/test_target_ae.py`` proves both rules agree on a corpus of awkward titles.
    """
    if len(value) > 16:
        return "must not exceed 16 characters"
    if not value.isascii():
        return "must only contain ASCII characters"
    if "\\" in value or any(c < " " or c == "\x7f" for c in value):
        return "must not contain control characters or backslashes"
    return ""


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def check_port(value: int | str, what: str) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TargetError(f"{what} {value!r} is not a port number")
    try:
        port = int(value)
    except (TypeError, ValueError, OverflowError):
        raise TargetError(f"{what} {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise TargetError(f"{what} {port} is out of range (1-65535)")
    return port


def check_timeout(value: object, what: str = "The timeout") -> float:
    """A timeout in seconds: a finite number above 0 and at most an hour."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetError(f"{what} must be a number of seconds, not {_type_name(value)} {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise TargetError(f"{what} {value!r} s is out of range (more than 0, at most {MAX_TIMEOUT:g})")
    return float(value)


def check_host(value: object, what: str = "The PACS host") -> str:
    """A host name or IP address as the resolver will take it, or TargetError saying why not:
    no spaces or control characters, labels of 1 to 63 characters (after IDNA encoding), 253
    characters in all."""
    if not isinstance(value, str):
        raise TargetError(f"{what} must be text, not {_type_name(value)} {value!r}")
    host = value.strip()
    if not host:
        raise TargetError(f"{what} is empty")
    shown = host if len(host) <= 40 else host[:37] + "..."
    if any(c.isspace() or not c.isprintable() for c in host) or any(c in host for c in "/@[]\\"):
        raise TargetError(f"{what} {shown!r} contains characters no host name has")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return host
    except ValueError:
        pass
    if len(host.rstrip(".")) > 253:
        raise TargetError(f"{what} {shown!r} is longer than 253 characters")
    for label in host.rstrip(".").split("."):
        try:
            encoded = label.encode("idna") if not label.isascii() else label.encode("ascii")
        except UnicodeError:
            raise TargetError(f"{what} {shown!r} is not a valid host name: the label {label[:20]!r} "
                              "cannot be encoded (IDNA)") from None
        if not 1 <= len(encoded) <= 63:
            raise TargetError(f"{what} {shown!r} is not a valid host name: each part between dots "
                              "needs 1 to 63 characters")
    return host


def check_readable(path: str, what: str) -> str:
    """A file qrdoctor can read, or TargetError saying why not."""
    if not isinstance(path, str):
        raise TargetError(f"{what} must be a file name, not {_type_name(path)} {path!r}")
    if not os.path.isfile(path):
        raise TargetError(f"{what} {path}: no such file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise TargetError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    return path


@dataclass(frozen=True)
class TLSOptions:
    """How to secure the connection: whom to trust, and our own certificate if the PACS wants one."""

    ca_file: str | None = None  # certificate authority for the PACS; None: the system's trust store
    cert_file: str | None = None  # our client certificate (PEM), when the PACS requires one
    key_file: str | None = None  # its private key (PEM); may be inside cert_file
    verify: bool = True  # verify the PACS's certificate chain and name

    def __post_init__(self) -> None:
        for what, path in (("--tls-ca", self.ca_file), ("--tls-cert", self.cert_file), ("--tls-key", self.key_file)):
            if path:
                check_readable(path, what)
        if not isinstance(self.verify, bool):
            raise TargetError(f"tls_verify must be true or false, not {self.verify!r}")
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
    # False in a DICOMweb-only run: no DIMSE target was given, host and port are the DICOMweb
    # base URL's (for display), the AE titles are empty and only the DICOMweb checks run.
    dimse: bool = True
    dicomweb: str | None = None  # the DICOMweb base URL, when one is checked (display only)

    def __post_init__(self) -> None:
        if not self.dimse:
            object.__setattr__(self, "host", check_host(self.host, "The DICOMweb host"))
            object.__setattr__(self, "port", check_port(self.port, "The DICOMweb port"))
            object.__setattr__(self, "timeout", check_timeout(self.timeout))
            return
        object.__setattr__(self, "called_ae", check_ae_title(self.called_ae, "The PACS AE title"))
        object.__setattr__(self, "calling_ae", check_ae_title(self.calling_ae, "The calling AE title"))
        move = self.move_ae if self.move_ae is not None else self.calling_ae
        object.__setattr__(self, "move_ae", check_ae_title(move, "The move destination AE title"))
        object.__setattr__(self, "port", check_port(self.port, "The PACS port"))
        # Port 0 lets the operating system choose the Store SCP port (used by tests).
        if isinstance(self.store_port, bool) or self.store_port != 0:
            object.__setattr__(self, "store_port", check_port(self.store_port, "The store port"))
        object.__setattr__(self, "host", check_host(self.host))
        if self.advertise is not None:
            object.__setattr__(self, "advertise", check_host(self.advertise, "The advertised address"))
        object.__setattr__(self, "timeout", check_timeout(self.timeout))

    @classmethod
    def dicomweb_only(cls, url: str, timeout: float = DEFAULT_TIMEOUT) -> Target:
        """The target of a run with a DICOMweb base URL and no DIMSE target."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise TargetError("The DICOMweb URL is not a valid URL") from None
        return cls(host=parts.hostname or "", port=port, called_ae="", calling_ae="", move_ae="",
                   timeout=timeout, dimse=False, dicomweb=url)

    @property
    def label(self) -> str:
        if not self.dimse:
            return f"DICOMweb {self.dicomweb or self.host}"
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


@cache
def profile_model():
    """The pydantic model of a saved profile's table (built on first use)."""
    from pydantic import BaseModel, ConfigDict

    class Profile(BaseModel):
        """A saved profile's table, typed strictly: a port is an integer (not ``true``), a title
        text, a timeout a finite number. Other keys are the checks' option values (validated by
        their own models)."""

        model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

        called_ae: str
        host: str
        port: int
        calling_ae: str | None = None
        move_ae: str | None = None
        store_port: int | None = None
        advertise: str | None = None
        timeout: float | None = None
        tls: bool = False
        tls_ca: str | None = None
        tls_cert: str | None = None
        tls_key: str | None = None
        tls_verify: bool = True

    return Profile


def read_toml(path: Path) -> dict:
    """A TOML file's content; TargetError (one line) for a file that cannot be read or parsed:
    missing permissions, invalid UTF-8, a syntax error, nesting too deep for the parser."""
    import tomllib  # a profile is read in few runs; the parser costs every run start-up time

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetError(f"Cannot read the profiles file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TargetError(f"Cannot read the profiles file {path}: it is not UTF-8 text "
                          f"(byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"Cannot read the profiles file {path}: {exc}") from None
    except (RecursionError, MemoryError):
        raise TargetError(f"Cannot read the profiles file {path}: it is nested too deeply") from None


def load_profiles(path: Path | None = None) -> dict[str, dict]:
    path = path or profiles_path()
    try:
        if not path.exists():
            return {}
    except OSError as exc:
        raise TargetError(f"Cannot read the profiles file {path}: {exc.strerror or exc}") from None
    profiles = read_toml(path).get("profiles", {})
    if not isinstance(profiles, dict):
        raise TargetError(f"{path}: [profiles] must be a table of named nodes")
    return profiles


def saved_profile(name: str, path: Path | None = None) -> dict:
    """The table of the saved profile ``name``, checked against :class:`Profile`, or TargetError
    naming the profiles there are (or what is wrong with this one)."""
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none saved"
        raise TargetError(
            f"{name!r} is neither AE@host:port nor a saved profile (profiles: {known})"
        )
    table = profiles[name]
    if not isinstance(table, dict):
        raise TargetError(f"Profile {name!r} must be a table of settings ([profiles.{name}]), "
                          f"not {_type_name(table)}")
    from pydantic import ValidationError

    try:
        profile_model().model_validate(table)
    except ValidationError as exc:
        raise TargetError(f"Profile {name!r}: {_profile_errors(exc)}") from None
    return table


def _profile_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        key = ".".join(str(x) for x in err.get("loc", ())) or "profile"
        if err.get("type") == "missing":
            parts.append(f"the key {key!r} is missing")
        else:
            got = err.get("input")
            if isinstance(got, bool):
                shown = "true" if got else "false"
            elif isinstance(got, int | float | str) and len(repr(got)) < 40:
                shown = repr(got)
            else:
                shown = _type_name(got)
            parts.append(f"{key} = {shown}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts)


def profile_settings(text: str, path: Path | None = None) -> dict:
    """Everything a target text's saved profile holds (the checks' option values among it);
    empty for ``AE@host:port``."""
    return {} if "@" in text else saved_profile(text, path)


def target_from_profile(name: str, overrides: dict[str, object], path: Path | None = None) -> Target:
    p = saved_profile(name, path)
    try:
        options = {k: p[k] for k in _PROFILE_KEYS if p.get(k) is not None}
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
