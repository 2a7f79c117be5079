"""DICOMweb credentials, WWW-Authenticate challenges and JWT claims.

The secret never comes from the command line: a password only from the environment variable
``QRDOCTOR_DICOMWEB_PASSWORD``, a bearer token only from a file. ``repr``/``str`` of
:class:`Credentials` never show it, and :meth:`Credentials.secrets` lists every string that has
to be redacted wherever a request is recorded.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD_ENV = "QRDOCTOR_DICOMWEB_PASSWORD"
MAX_TOKEN_BYTES = 64 * 1024


class CredentialsError(ValueError):
    """The credentials cannot be built (variable unset, token file unreadable or empty); the
    message names the variable or the file, never the secret."""


class Credentials:
    """HTTP Basic (user + password) or Bearer (token) credentials."""

    __slots__ = ("_secret", "scheme", "user")

    def __init__(self, scheme: str, secret: str, user: str | None = None) -> None:
        if scheme not in ("basic", "bearer"):
            raise CredentialsError(f"unknown authentication scheme {scheme!r}")
        if scheme == "basic" and not user:
            raise CredentialsError("HTTP Basic needs a user name")
        if not secret:
            raise CredentialsError("the password or token is empty")
        self.scheme = scheme
        self.user = user
        self._secret = secret

    @classmethod
    def basic_from_env(cls, user: str, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ
        password = env.get(PASSWORD_ENV)
        if not password:
            raise CredentialsError(f"a DICOMweb user was given but the environment variable {PASSWORD_ENV} "
                                   "that holds the password is not set")
        return cls("basic", password, user)

    @classmethod
    def bearer_from_file(cls, path: str | os.PathLike[str]) -> Credentials:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                raw = fh.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise CredentialsError(f"cannot read the token file {p}: {exc.strerror or exc}") from None
        if len(raw) > MAX_TOKEN_BYTES:
            raise CredentialsError(f"the token file {p} is larger than {MAX_TOKEN_BYTES} bytes")
        token = raw.decode("utf-8", "replace").strip()
        if not token:
            raise CredentialsError(f"the token file {p} is empty")
        if any(c.isspace() for c in token):
            raise CredentialsError(f"the token file {p} holds more than one word; it must hold the token only")
        return cls("bearer", token)

    def authorization(self) -> str:
        """The value of the ``Authorization`` header."""
        if self.scheme == "basic":
            blob = base64.b64encode(f"{self.user}:{self._secret}".encode()).decode("ascii")
            return f"Basic {blob}"
        return f"Bearer {self._secret}"

    @property
    def token(self) -> str | None:
        """The bearer token (for decoding its claims), None for Basic."""
        return self._secret if self.scheme == "bearer" else None

    def secrets(self) -> list[str]:
        """Every string that must never appear in any output."""
        out = [self._secret, self.authorization()]
        if self.scheme == "basic":
            out.append(self.authorization().split(" ", 1)[1])
        return out

    def describe(self) -> str:
        return f"HTTP Basic as user {self.user}" if self.scheme == "basic" else "a bearer token"

    def __repr__(self) -> str:
        who = f", user={self.user!r}" if self.user else ""
        return f"Credentials(scheme={self.scheme!r}{who}, secret=<redacted>)"

    __str__ = __repr__


# --- RFC 7235 challenges --------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"?|{_TOKEN})?", re.S)
_SCHEME_RE = re.compile(rf"({_TOKEN})(?:[ \t]+(.*))?$", re.S)
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*$")
MAX_CHALLENGES = 32


@dataclass(frozen=True)
class Challenge:
    scheme: str  # as sent; compare with .lower()
    params: dict[str, str] = field(default_factory=dict)  # names lower-cased
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def _split_items(value: str) -> list[str]:
    """Split at commas outside quoted strings."""
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for c in value:
        if quoted:
            buf.append(c)
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            buf.append(c)
        elif c == ",":
            items.append("".join(buf))
            buf = []
        else:
            buf.append(c)
    items.append("".join(buf))
    return [i.strip(" \t") for i in items if i.strip(" \t")]


def _unquote(v: str | None) -> str:
    if not v:
        return ""
    if v.startswith('"'):
        body = v[1:-1] if len(v) > 1 and v.endswith('"') else v[1:]
        return re.sub(r"\\(.)", r"\1", body, flags=re.S)
    return v


def parse_challenges(value: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value (RFC 7235 §4.1): several challenges,
    each with a token68 or comma-separated parameters (quoted strings unescaped; parameter names
    lower-cased). Lenient: an item that fits nothing is skipped, nothing raises."""
    out: list[Challenge] = []
    for item in _split_items(value or ""):
        param = _PARAM_RE.match(item)
        if param and param.end() == len(item) and out:
            out[-1].params[param.group(1).lower()] = _unquote(param.group(2))
            continue
        head = _SCHEME_RE.match(item)
        if head is None:
            continue
        if len(out) >= MAX_CHALLENGES:
            break
        rest = (head.group(2) or "").strip(" \t")
        first = _PARAM_RE.match(rest) if rest else None
        if first and first.end() == len(rest):
            out.append(Challenge(head.group(1), {first.group(1).lower(): _unquote(first.group(2))}))
        elif rest and _TOKEN68_RE.match(rest):
            out.append(Challenge(head.group(1), token68=rest))
        else:
            out.append(Challenge(head.group(1)))
    return out


# --- JWT claims -----------------------------------------------------------------------------

@dataclass(frozen=True)
class JwtClaims:
    """What a JWT says about itself; never the signature."""

    alg: str | None
    typ: str | None
    iss: str | None
    aud: list[str]
    exp: int | None
    nbf: int | None
    iat: int | None
    azp: str | None
    scope: str | None

    def expired(self, now: float) -> bool:
        return self.exp is not None and now >= self.exp

    def not_yet_valid(self, now: float) -> bool:
        return self.nbf is not None and now < self.nbf

    def as_dict(self) -> dict[str, object]:
        return {"alg": self.alg, "typ": self.typ, "iss": self.iss, "aud": list(self.aud), "exp": self.exp,
                "nbf": self.nbf, "iat": self.iat, "azp": self.azp, "scope": self.scope}


def _b64url_json(segment: str) -> object:
    pad = "=" * (-len(segment) % 4)
    raw = base64.urlsafe_b64decode(segment + pad)
    return json.loads(raw.decode("utf-8"))


def _int_or_none(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v == v and abs(v) < 1e15:
        return int(v)
    return None


def _str_or_none(v: object) -> str | None:
    return v if isinstance(v, str) else None


def decode_jwt(token: str) -> JwtClaims | None:
    """The header algorithm and registered claims of a JWS compact token (unverified), or None
    when the token is not one (opaque tokens, JWE, garbage)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        return None
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    try:
        header = _b64url_json(parts[0])
        payload = _b64url_json(parts[1])
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict) or "alg" not in header:
        return None
    aud = payload.get("aud")
    auds = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    scope = payload.get("scope", payload.get("scp"))
    if isinstance(scope, list):
        scope = " ".join(s for s in scope if isinstance(s, str))
    return JwtClaims(alg=_str_or_none(header.get("alg")), typ=_str_or_none(header.get("typ")),
                     iss=_str_or_none(payload.get("iss")), aud=auds, exp=_int_or_none(payload.get("exp")),
                     nbf=_int_or_none(payload.get("nbf")), iat=_int_or_none(payload.get("iat")),
                     azp=_str_or_none(payload.get("azp")), scope=_str_or_none(scope))
