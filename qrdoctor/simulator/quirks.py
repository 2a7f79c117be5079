"""Misbehaviours of real PACS products, switchable by name and combinable.

A quirk string is a comma-separated list of ``name`` or ``name=value`` items, for example
``"silent-cap=500,case-sensitive-pn,calling-ae-allowlist=WS1+WS2"``. Lists inside a value are
separated by ``+``. Names are stable: tests, the demo and saved command lines rely on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from pydicom.datadict import tag_for_keyword

__all__ = [
    "QuirkInfo",
    "QUIRKS",
    "Quirks",
    "parse_quirks",
    "describe_quirks",
    "DEMO_QUIRKS",
    "DEMO_STUDIES",
    "WEB_QUIRKS",
]


class QuirkInfo(NamedTuple):
    """What a quirk takes and what it does: ``(param, explanation)``."""

    param: str | None  # hint for the value, e.g. "N"; None for a plain switch
    explanation: str  # one sentence


# Quirks whose value may be left out.
_OPTIONAL_VALUE = frozenset({"calling-ae-allowlist"})


QUIRKS: dict[str, QuirkInfo] = {
    "silent-cap": QuirkInfo(
        "N",
        "C-FIND stops after N matches and still ends with Success (0x0000), as the Google Cloud "
        "DICOM adapter does at its configured limit.",
    ),
    "cap-cancel": QuirkInfo(
        "N",
        "C-FIND stops after N matches and ends with Cancel (0xFE00) although nobody cancelled, "
        "like Orthanc's LimitFindResults.",
    ),
    "cap-warning": QuirkInfo(
        "N",
        "C-FIND stops after N matches and ends with Warning 0xB001 (matching reached response "
        "limit).",
    ),
    "cap-refuse": QuirkInfo(
        "N",
        "A C-FIND that would match more than N records is refused with 0xA700 (out of "
        "resources) and returns nothing, like dcm4chee's QueryMaxNumberOfResults.",
    ),
    "cap-abort": QuirkInfo(
        "N",
        "The PACS aborts the association (A-ABORT) once it has sent N C-FIND matches and more "
        "would follow.",
    ),
    "calling-ae-allowlist": QuirkInfo(
        "AE1+AE2",
        "Associations from calling AE titles not on the list (without a list: the known AE "
        "titles and move destinations) are rejected 1/1/3 (calling AE title not recognised).",
    ),
    "check-called-ae": QuirkInfo(
        None,
        "Associations that do not call the PACS by its exact AE title are rejected 1/1/7 "
        "(called AE title not recognised).",
    ),
    "query-refused-unknown": QuirkInfo(
        None,
        "Any AE title may associate and C-ECHO, but C-FIND/C-MOVE/C-GET from calling AE titles "
        "the PACS does not know are refused with status 0x0124 (not authorised).",
    ),
    "query-abort-unknown": QuirkInfo(
        None,
        "Any AE title may associate and C-ECHO, but the PACS answers C-FIND/C-MOVE/C-GET from "
        "unknown calling AE titles with an A-ABORT, as Orthanc does when "
        "DicomAlwaysAllowFind is off.",
    ),
    "case-sensitive-pn": QuirkInfo(
        None,
        "Person name matching is case sensitive (like DCMTK's dcmqrscp), so smith* does not "
        "find SMITH^JOHN.",
    ),
    "family-name-wildcards": QuirkInfo(
        None,
        "PN wildcard patterns are compared with the family name component alone, so *SMITH* "
        "misses JONES^SMITH and SMITH^J* finds nothing.",
    ),
    "per-component-pn": QuirkInfo(
        None,
        "PN wildcard patterns are split at ^ and each part is matched against its own name "
        "component (as dcm4chee-arc up to 5.22.6), so SMITH^J* finds SMITH^JOHN but SMI*JO* does not.",
    ),
    "no-question-mark": QuirkInfo(
        None,
        "The ? wildcard is taken literally instead of matching exactly one character.",
    ),
    "no-open-ranges": QuirkInfo(
        None,
        "Open-ended date/time ranges (20240101- or -20231231) silently match nothing; closed "
        "ranges and single values still work.",
    ),
    "empty-keys": QuirkInfo(
        "Key1+Key2",
        "The named return keys always come back empty (e.g. StudyDescription+AccessionNumber) "
        "although the PACS holds the values and still matches on them.",
    ),
    "no-patient-root": QuirkInfo(
        None,
        "Patient Root and Patient/Study Only FIND/MOVE/GET presentation contexts are rejected: "
        "only Study Root is offered.",
    ),
    "no-get": QuirkInfo(
        None,
        "C-GET presentation contexts are rejected (abstract syntax not supported): the PACS "
        "only retrieves by C-MOVE.",
    ),
    "move-destination-unknown": QuirkInfo(
        None,
        "Every C-MOVE fails with 0xA801 (move destination unknown), whatever the destination.",
    ),
    "wrong-port": QuirkInfo(
        None,
        "Every move destination is registered with its port + 1, so the PACS connects to the "
        "wrong port and the C-MOVE fails with 0xA702 and Failed = N.",
    ),
    "success-all-failed": QuirkInfo(
        None,
        "C-MOVE and C-GET report Success (0x0000) with Failed = N although nothing was sent.",
    ),
    "success-zero": QuirkInfo(
        None,
        "C-MOVE and C-GET report Success (0x0000) with Completed = 0 and nothing sent, as an "
        "overloaded PACS that found nothing does.",
    ),
    "pending-forever": QuirkInfo(
        None,
        "C-MOVE and C-GET send Pending responses without progress, about twice a second, until "
        "the association is aborted.",
    ),
    "study-row-per-image": QuirkInfo(
        None,
        "A STUDY-level C-FIND answers one row per image of each matching study, the same "
        "Study Instance UID again and again, as an archive that queries its image table does.",
    ),
    "charset-missing": QuirkInfo(
        None,
        "C-FIND answers hold names in their Latin-1 or UTF-8 bytes but never carry Specific "
        "Character Set (0008,0005), so receivers must guess the encoding.",
    ),
    "charset-utf8-declared-latin1": QuirkInfo(
        None,
        "C-FIND answers declare Specific Character Set ISO_IR 100 (Latin-1) but hold names in "
        "UTF-8 bytes, as a PACS whose database holds UTF-8 and declares Latin-1 does: receivers "
        "that follow the declaration show MÃ¼ller for Müller.",
    ),
    "slow": QuirkInfo(
        "SECONDS",
        "The PACS waits SECONDS before each C-ECHO, C-FIND, C-MOVE or C-GET response.",
    ),
    "max-associations": QuirkInfo(
        "N",
        "More than N simultaneous associations are rejected 2/3/2 (transient, local limit "
        "exceeded).",
    ),
    # ---- DICOMweb (any web-* quirk starts the DICOMweb face, see simulator.web) ----
    "web-root": QuirkInfo(
        "/PATH",
        "DICOMweb is served under /PATH instead of /dicom-web (every product has its own root: "
        "/dicomweb, /wado-rs, /dcm4chee-arc/aets/AET/rs, ...); any other path answers 404 with "
        "an empty body.",
    ),
    "web-auth": QuirkInfo(
        "basic|bearer",
        "DICOMweb needs authentication. basic: HTTP Basic, realm \"SIMPACS\", user radiology with "
        "password sim-secret (user guest with the same password is authenticated but answered "
        "403). bearer: RFC 6750, realm \"SIMPACS\"; the token SIMULATED-TOKEN and the JWT "
        "simulator.web.BEARER_JWT (iss https://idp.simpacs.local/realms/pacs, aud simpacs-dicomweb, "
        "exp 2100-01-01, scope dicomweb.read) are accepted, BEARER_JWT_EXPIRED is answered 401 "
        "invalid_token and BEARER_JWT_NO_SCOPE 403 insufficient_scope.",
    ),
    "web-cap": QuirkInfo(
        "N",
        "QIDO-RS answers at most N results and says nothing about the rest (no Warning, status "
        "200), as reported of the Azure DICOM service's 100 (Weasis#436) and of Google's DICOM "
        "adapter (adapter#42).",
    ),
    "web-warning": QuirkInfo(
        None,
        "With web-cap: a capped QIDO-RS answer carries Warning: 299 SIMPACS \"There are K "
        "additional results that can be requested\" (the agent is the PACS's AE title), as "
        "dcm4chee-arc does at its QidoMaxNumberOfResults.",
    ),
    "web-offset-ignored": QuirkInfo(
        None,
        "QIDO-RS ignores offset and always answers from the first match, so a client that pages "
        "gets the same page again and again.",
    ),
    "web-limit-max": QuirkInfo(
        "N",
        "QIDO-RS answers 400 Bad Request to a limit above N instead of returning at most N.",
    ),
    "web-includefield-ignored": QuirkInfo(
        None,
        "QIDO-RS ignores includefield (all or named attributes) and returns its default "
        "attributes only.",
    ),
    "web-406-compressed": QuirkInfo(
        None,
        "WADO-RS answers 406 Not Acceptable to any transfer syntax other than Explicit or Implicit "
        "VR Little Endian and *, as archives that cannot transcode do (dcm4chee-arc#1715); "
        "without it the simulator also transcodes to RLE Lossless.",
    ),
    "web-multipart-bad": QuirkInfo(
        None,
        "WADO-RS multipart/related answers lack the closing boundary delimiter (--boundary--), "
        "so strict parsers cannot tell whether the last part is complete.",
    ),
    "web-internal-url": QuirkInfo(
        None,
        "QIDO-RS RetrieveURL values point at http://pacs-internal.local:8080/dicom-web/..., the "
        "archive's own address behind a reverse proxy, which clients outside cannot reach.",
    ),
    "web-case-sensitive": QuirkInfo(
        None,
        "QIDO-RS matches PatientName case-sensitively while C-FIND on the same PACS does not "
        "(two query engines over one database).",
    ),
}

#: The DICOMweb quirks: any of them starts the simulator's DICOMweb face.
WEB_QUIRKS = frozenset(name for name in QUIRKS if name.startswith("web-"))

# Quirks that cannot be combined with each other (they answer the same question differently).
_EXCLUSIVE_GROUPS = (
    ("silent-cap", "cap-cancel", "cap-warning", "cap-refuse", "cap-abort"),
    ("query-refused-unknown", "query-abort-unknown"),
    ("family-name-wildcards", "per-component-pn"),
    ("move-destination-unknown", "wrong-port", "success-all-failed", "success-zero",
     "pending-forever"),
    ("charset-missing", "charset-utf8-declared-latin1"),
)

_INT_QUIRKS = {"silent-cap", "cap-cancel", "cap-warning", "cap-refuse", "cap-abort",
               "max-associations", "web-cap", "web-limit-max"}

#: A realistic combination for ``qrdoctor demo``: a silent cap at an odd number, family-name-only
#: wildcards, a key returned empty, no C-GET, and the demo's move destination (QRDOCTOR)
#: registered with the wrong port; over DICOMweb, QIDO-RS capped at another number than C-FIND
#: (100) with a Warning header. Every stage still runs; several of them find something.
DEMO_QUIRKS = ("silent-cap=137,family-name-wildcards,empty-keys=ReferringPhysicianName,no-get,"
               "wrong-port,web-cap=100,web-warning")
#: Archive size for the demo: large enough for the cap to bite.
DEMO_STUDIES = 400


@dataclass(frozen=True)
class Quirks:
    """Parsed quirks. ``items`` keeps the order and values as given; the fields are derived."""

    items: tuple[tuple[str, object], ...] = ()
    find_cap: tuple[str, int] | None = None  # (quirk name, N)
    allowlist: tuple[str, ...] | None = None  # None: off; (): the known AE titles
    check_called_ae: bool = False
    unknown_ae_policy: str | None = None  # "refuse" (0x0124) | "abort"
    case_sensitive_pn: bool = False
    family_name_wildcards: str = ""  # PN wildcards: "" whole value, "family_name" or "per_component"
    no_question_mark: bool = False
    no_open_ranges: bool = False
    empty_keys: frozenset[str] = field(default_factory=frozenset)
    no_patient_root: bool = False
    no_get: bool = False
    study_row_per_image: bool = False
    charset_missing: bool = False
    charset_utf8_as_latin1: bool = False  # names in UTF-8 under ISO_IR 100
    move_outcome: str | None = None  # one of the move-outcome quirk names
    slow: float = 0.0
    max_associations: int | None = None
    web_root: str = "/dicom-web"  # the DICOMweb root path served, no trailing "/" ("" = "/")
    web_auth: str | None = None  # "basic" | "bearer"
    web_cap: int | None = None
    web_warning: bool = False
    web_offset_ignored: bool = False
    web_limit_max: int | None = None
    web_includefield_ignored: bool = False
    web_406_compressed: bool = False
    web_multipart_bad: bool = False
    web_internal_url: bool = False
    web_case_sensitive: bool = False

    @property
    def dicomweb(self) -> bool:
        """A DICOMweb quirk is on (it implies the DICOMweb face)."""
        return any(name in WEB_QUIRKS for name in self.names)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.items]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __bool__(self) -> bool:
        return bool(self.items)

    def __str__(self) -> str:
        parts = []
        for name, value in self.items:
            if value is None or value == ():
                parts.append(name)
            elif isinstance(value, tuple):
                parts.append(f"{name}={'+'.join(value)}")
            else:
                parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
        return ",".join(parts)


def _bad(name: str, message: str) -> ValueError:
    info = QUIRKS[name]
    return ValueError(f"quirk {name!r}: {message} (usage: {name}={info.param})")


def _parse_value(name: str, raw: str | None) -> object:
    info = QUIRKS[name]
    if info.param is None:
        if raw is not None:
            raise ValueError(f"quirk {name!r} takes no value, got {name}={raw}")
        return None
    if raw is None or raw.strip() == "":
        if name in _OPTIONAL_VALUE:
            return ()
        raise _bad(name, "needs a value")
    raw = raw.strip()
    if name in _INT_QUIRKS:
        try:
            number = int(raw)
        except ValueError:
            raise _bad(name, f"{raw!r} is not a whole number") from None
        if number < 1:
            raise _bad(name, f"needs a number of at least 1, not {number}")
        return number
    if name == "slow":
        try:
            seconds = float(raw)
        except ValueError:
            raise _bad(name, f"{raw!r} is not a number of seconds") from None
        if not 0 <= seconds <= 600:
            raise _bad(name, f"needs 0 to 600 seconds, not {raw}")
        return seconds
    if name == "web-root":
        return _web_root(raw)
    if name == "web-auth":
        if raw.lower() not in ("basic", "bearer"):
            raise _bad(name, f"{raw!r} is neither basic nor bearer")
        return raw.lower()
    values = tuple(v.strip() for v in raw.split("+"))
    if any(not v for v in values):
        raise _bad(name, f"empty item in {raw!r}")
    if name == "calling-ae-allowlist":
        for ae in values:
            if len(ae) > 16 or "\\" in ae or not ae.isprintable():
                raise _bad(name, f"{ae!r} is not a valid AE title (at most 16 characters)")
        return values
    if name == "empty-keys":
        for keyword in values:
            if tag_for_keyword(keyword) is None:
                raise _bad(name, f"{keyword!r} is not a DICOM keyword (e.g. StudyDescription)")
        return values
    raise AssertionError(name)  # pragma: no cover - every quirk with a value is handled above


_WEB_ROOT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/")


def _web_root(raw: str) -> str:
    """``/PATH`` of web-root: absolute, plain characters, no dot segments; "/" alone serves at the
    server's root. Returned without a trailing "/" (except "/" itself)."""
    name = "web-root"
    if not raw.startswith("/") or len(raw) > 100:
        raise _bad(name, f"{raw!r} is not a path starting with / (at most 100 characters)")
    if not set(raw) <= _WEB_ROOT_CHARS:
        raise _bad(name, f"{raw!r} may hold only letters, digits and - . _ ~ /")
    segments = [s for s in raw.split("/") if s]
    if any(s in (".", "..") for s in segments) or "//" in raw:
        raise _bad(name, f"{raw!r} has an empty, . or .. segment")
    return "".join("/" + s for s in segments) or "/"


def parse_quirks(spec: str | Iterable[str] | Quirks | None) -> Quirks:
    """Parse ``"name,name=value,..."`` (or an iterable of such items) into :class:`Quirks`.

    Raises :class:`ValueError` with a readable message for an unknown name, a bad or missing
    value, a repeated quirk or two quirks that contradict each other.
    """
    if isinstance(spec, Quirks):
        return spec
    if spec is None:
        return Quirks()
    if isinstance(spec, str):
        tokens = [t for t in (x.strip() for x in spec.replace("\n", ",").split(",")) if t]
    else:
        tokens = []
        for entry in spec:
            if not isinstance(entry, str):
                raise TypeError(f"quirks must be strings, got {entry!r}")
            tokens.extend(t for t in (x.strip() for x in entry.split(",")) if t)

    items: list[tuple[str, object]] = []
    for token in tokens:
        name, sep, raw = token.partition("=")
        name = name.strip().lower()
        if name not in QUIRKS:
            known = ", ".join(sorted(QUIRKS))
            raise ValueError(f"unknown quirk {name!r}; known quirks: {known}")
        if name in (n for n, _ in items):
            raise ValueError(f"quirk {name!r} is given twice")
        items.append((name, _parse_value(name, raw if sep else None)))

    names = [n for n, _ in items]
    for group in _EXCLUSIVE_GROUPS:
        clash = [n for n in names if n in group]
        if len(clash) > 1:
            raise ValueError(f"quirks {' and '.join(clash)} cannot be combined")

    values = dict(items)
    find_cap = next(((n, int(values[n])) for n in _EXCLUSIVE_GROUPS[0] if n in values), None)  # type: ignore[call-overload]
    unknown = None
    if "query-refused-unknown" in values:
        unknown = "refuse"
    elif "query-abort-unknown" in values:
        unknown = "abort"
    if "web-warning" in values and "web-cap" not in values:
        raise ValueError("quirk 'web-warning' needs web-cap=N (it warns about the capped results)")
    allow = values.get("calling-ae-allowlist")  # None when the quirk is off
    return Quirks(
        items=tuple(items),
        find_cap=find_cap,
        allowlist=allow,  # type: ignore[arg-type]
        check_called_ae="check-called-ae" in values,
        unknown_ae_policy=unknown,
        case_sensitive_pn="case-sensitive-pn" in values,
        family_name_wildcards=pn_wildcard_mode(values),
        no_question_mark="no-question-mark" in values,
        no_open_ranges="no-open-ranges" in values,
        empty_keys=frozenset(values.get("empty-keys", ())),  # type: ignore[arg-type]
        no_patient_root="no-patient-root" in values,
        no_get="no-get" in values,
        study_row_per_image="study-row-per-image" in values,
        charset_missing="charset-missing" in values,
        charset_utf8_as_latin1="charset-utf8-declared-latin1" in values,
        move_outcome=next((n for n in _EXCLUSIVE_GROUPS[3] if n in values), None),
        slow=float(values.get("slow", 0.0)),  # type: ignore[arg-type]
        max_associations=values.get("max-associations"),  # type: ignore[arg-type]
        web_root=str(values.get("web-root", "/dicom-web")).rstrip("/"),
        web_auth=values.get("web-auth"),  # type: ignore[arg-type]
        web_cap=values.get("web-cap"),  # type: ignore[arg-type]
        web_warning="web-warning" in values,
        web_offset_ignored="web-offset-ignored" in values,
        web_limit_max=values.get("web-limit-max"),  # type: ignore[arg-type]
        web_includefield_ignored="web-includefield-ignored" in values,
        web_406_compressed="web-406-compressed" in values,
        web_multipart_bad="web-multipart-bad" in values,
        web_internal_url="web-internal-url" in values,
        web_case_sensitive="web-case-sensitive" in values,
    )


def pn_wildcard_mode(values: dict[str, object]) -> str:
    """How the simulator applies PN wildcards (see simulator.matching)."""
    if "family-name-wildcards" in values:
        return "family_name"
    return "per_component" if "per-component-pn" in values else ""


def describe_quirks() -> list[tuple[str, str]]:
    """``[(usage, explanation), ...]`` for ``qrdoctor demo --list-quirks``."""
    rows = []
    for name, info in QUIRKS.items():
        if info.param is None:
            usage = name
        elif name in _OPTIONAL_VALUE:
            usage = f"{name}[={info.param}]"
        else:
            usage = f"{name}={info.param}"
        rows.append((usage, info.explanation))
    return rows
