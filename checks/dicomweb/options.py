"""The DICOMweb stage's options: the base URL, credentials and the CA to trust.

``--dicomweb URL`` enables the stage (without it no dicomweb check runs). A password never comes
from the command line: ``--dicomweb-user USER`` takes it from the environment variable
``QRDOCTOR_DICOMWEB_PASSWORD``; a bearer token is read from ``--dicomweb-token-file``. A URL with
credentials in it (``https://user:pw@host/``) is refused, with a message that never repeats them.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from qrdoctor.core.options import Options
from qrdoctor.core.target import check_readable
from qrdoctor.dicomweb.auth import PASSWORD_ENV, Credentials, CredentialsError

URL_FIELD = "dicomweb"  # the option whose value enables the stage


def normalise_base_url(text: str) -> str:
    """The base URL as the checks use it: http or https, a host, no credentials, no query or
    fragment, ending with ``/``. Raises ValueError (never quoting a password) otherwise."""
    raw = text.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (check the host and the port number)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must start with http:// or https:// (e.g. https://pacs.example.org/dicom-web/)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not hold credentials: give the user with --dicomweb-user and the password in the "
            f"environment variable {PASSWORD_ENV} (or a bearer token with --dicomweb-token-file)")
    if not parts.hostname:
        raise ValueError("has no host (e.g. https://pacs.example.org/dicom-web/)")
    if parts.query or parts.fragment or raw.endswith("?") or "#" in raw:
        raise ValueError("must not hold a query or fragment: give the base URL only "
                         "(what comes before /studies)")
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError("contains spaces or control characters")
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    netloc = parts.netloc.lower() if port is None else parts.netloc
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def _error(message: str) -> PydanticCustomError:
    """A validation error whose message is ours alone (no "Value error, " before it)."""
    return PydanticCustomError("dicomweb_option", message)


class DicomwebOptions(Options):
    """Where the PACS answers DICOMweb, and how to authenticate there."""

    dicomweb: str | None = Field(
        None, description="DICOMweb base URL (http or https) to check QIDO-RS and WADO-RS at, e.g. "
                          "https://pacs.example.org/dicom-web/; without it no dicomweb check runs")
    dicomweb_user: str | None = Field(
        None, description=f"user for HTTP Basic authentication at --dicomweb; the password is read "
                          f"from the environment variable {PASSWORD_ENV}, never from the command line")
    dicomweb_token_file: str | None = Field(
        None, description="file holding a bearer token (OAuth 2 / JWT) for --dicomweb")
    dicomweb_ca: str | None = Field(
        None, description="certificate authority (PEM) to trust for an https --dicomweb URL "
                          "(default: the system's)")

    @field_validator("dicomweb")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            return normalise_base_url(v)
        except ValueError as exc:
            raise _error(str(exc)) from None

    @field_validator("dicomweb_user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if ":" in v or any(not c.isprintable() for c in v):
            raise _error("must be a user name only (no ':' and no control characters); the "
                         f"password goes in the environment variable {PASSWORD_ENV}")
        return v.strip()

    @field_validator("dicomweb_token_file", "dicomweb_ca")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else v

    @model_validator(mode="after")
    def _together(self) -> DicomwebOptions:
        """Rules between the fields (a form checks each field alone first: then they do not
        apply). Without --dicomweb the others are not used: the command line says so."""
        if self.dicomweb_user and self.dicomweb_token_file:
            raise _error("give either --dicomweb-user (HTTP Basic) or --dicomweb-token-file "
                         "(bearer token), not both")
        if self.dicomweb_ca and self.dicomweb and not self.dicomweb.startswith("https://"):
            raise _error("--dicomweb-ca is for an https:// --dicomweb URL")
        return self

    def check_local(self) -> None:
        """What this computer must provide before a run (not checked when a recorded run is
        replayed elsewhere): the password variable, a readable token file and CA file. Raises
        ValueError naming the option, never a secret."""
        if self.dicomweb_user and not os.environ.get(PASSWORD_ENV):
            raise ValueError(f"--dicomweb-user needs the password in the environment variable {PASSWORD_ENV}")
        for flag, path in (("--dicomweb-token-file", self.dicomweb_token_file), ("--dicomweb-ca", self.dicomweb_ca)):
            if path:
                check_readable(path, flag)  # a TargetError is a ValueError
        try:
            self.credentials()
        except CredentialsError as exc:
            raise ValueError(str(exc)) from None

    def credentials(self) -> Credentials | None:
        """The credentials these options describe (None: none given). Raises CredentialsError
        (naming the variable or file, never the secret) when they cannot be read."""
        if self.dicomweb_user:
            return Credentials.basic_from_env(self.dicomweb_user)
        if self.dicomweb_token_file:
            return Credentials.bearer_from_file(self.dicomweb_token_file)
        return None

    def secrets(self) -> list[str]:
        """Every string that must never appear in an output of the run (the password, the
        token, the Authorization header's value): the runner removes them from every result."""
        try:
            creds = self.credentials()
        except CredentialsError:
            return []
        return creds.secrets() if creds is not None else []
