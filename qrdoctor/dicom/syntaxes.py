"""Transfer syntaxes by name, receiver profiles, and the Store SCP's choice per context.

A workstation's receiver accepts some image formats and not others; a PACS that stores JPEG-LS
and cannot convert then fails every sub-operation of a retrieve to it. A :class:`Profile` says
which transfer syntaxes our temporary Store SCP accepts, so that it can behave like that
workstation: ``all`` (the default), named groups and explicit UIDs, combinable
(``uncompressed,jpeg2000``). :func:`parse_profile` reads the text form and says clearly what
is wrong with a bad one.

The groups (UIDs from PS3.6 Annex A; names from pydicom where it has them):

- ``uncompressed``: Implicit VR Little Endian and Explicit VR Little Endian -- what a receiver
  configured for "uncompressed only" accepts. Deflated Explicit VR Little Endian is *not* in it:
  it is a lossless compression of the whole data set that a receiver must inflate, and many
  receivers that accept uncompressed images do not accept it; it has its own group,
  ``deflated``. Explicit VR Big Endian (retired) is in no group but ``all``.
- ``jpeg-baseline`` (Process 1, 8-bit lossy), ``jpeg-extended`` (Process 2 and 4),
  ``jpeg-lossless`` (Process 14 and its Selection Value 1), ``jpeg-ls`` (lossless and
  near-lossless), ``jpeg2000`` (Part 1 and Part 2, lossless and lossy), ``htj2k``
  (High-Throughput JPEG 2000), ``rle`` (RLE Lossless), ``deflated``.
- ``all``: every transfer syntax of the standard that carries a data set over the network
  (pydicom's list, plus Deflated Image Frame Compression, which pydicom 3.0 does not name);
  not the retired Papyrus 3 syntax, nor the MIME and XML encodings, which are for media and
  web services, never for an association. A private transfer syntax must be named by its UID.

The choice per presented context is the PACS's: of the transfer syntaxes it proposes, in its
order, the first the profile accepts (:func:`choose`) -- normally the format the PACS stores the
image in, so that a healthy retrieve needs no conversion. pynetdicom's acceptor would take
*our* first instead, which is why :func:`negotiate` decides itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from qrdoctor.core.imports import library

if TYPE_CHECKING:
    from pynetdicom.presentation import PresentationContext

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"  # Sup 244 (2025); pydicom 3.0 does not name it
VERIFICATION = "1.2.840.10008.1.1"

# Transfer syntaxes whose whole data set is deflated (PS3.5 A.5, A.7, A.12); the image frame
# compression above deflates frames only, its data set is Explicit VR Little Endian.
DEFLATED_DATA_SETS = (DEFLATED_EXPLICIT_VR_LE, "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205")

GROUPS: dict[str, tuple[str, ...]] = {
    "uncompressed": (IMPLICIT_VR_LE, EXPLICIT_VR_LE),
    "deflated": (DEFLATED_EXPLICIT_VR_LE,),
    "jpeg-baseline": ("1.2.840.10008.1.2.4.50",),
    "jpeg-extended": ("1.2.840.10008.1.2.4.51",),
    "jpeg-lossless": ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"),
    "jpeg-ls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                 "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"),
    "htj2k": ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
    "rle": ("1.2.840.10008.1.2.5",),
}
ALL = "all"
_NOT_FOR_NETWORK = frozenset({"1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2", "1.2.840.10008.1.20"})
_EXTRA_NAMES = {DEFLATED_IMAGE_FRAME: "Deflated Image Frame Compression"}


def _uid_dictionary() -> dict[str, Any]:
    """pydicom's table of UIDs, imported when a UID needs naming or checking (not when the
    option models that use this module are loaded: see ``qrdoctor check``'s start-up)."""
    return library("pydicom.uid").UID_dictionary


@cache
def standard() -> tuple[str, ...]:
    """Every transfer syntax the standard defines for the network (pydicom's table, without the
    ones for media only), with those pydicom does not name yet."""
    table = _uid_dictionary()
    return tuple(
        [uid for uid, entry in table.items() if entry[1] == "Transfer Syntax" and uid not in _NOT_FOR_NETWORK]
        + [uid for uid in _EXTRA_NAMES if uid not in table])


@cache
def _standard_set() -> frozenset[str]:
    return frozenset(standard())

# PS3.8 9.3.3.2: the result/reason of a presentation context in the A-ASSOCIATE-AC
ACCEPTANCE, USER_REJECTION, NO_REASON, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 0, 1, 2, 3, 4
REJECTED_SOP_CLASS = "rejected: SOP class"
REJECTED_TRANSFER_SYNTAX = "rejected: no accepted transfer syntax"
ACCEPTED = "accepted"

SOP_CLASSES_ANY = "any"  # every valid UID that is not a known non-storage SOP class
SOP_CLASSES_STANDARD = "standard"  # only the standard's storage SOP classes (retired included)
SOP_CLASS_POLICIES = (SOP_CLASSES_ANY, SOP_CLASSES_STANDARD)


class ProfileError(ValueError):
    """A receiver profile that cannot be used; the message says which part and why."""


def syntax_label(uid: str) -> str:
    """A transfer syntax's name in words, or "" when neither pydicom nor we know it."""
    if uid in _EXTRA_NAMES:
        return _EXTRA_NAMES[uid]
    entry = _uid_dictionary().get(uid)
    if entry is None:
        return ""
    return str(entry[0]).split(":")[0].strip()


def syntax_name(uid: str) -> str:
    """``JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)``; a UID no one named is
    shown as ``unnamed transfer syntax (UID)``."""
    label = syntax_label(uid)
    return f"{label or 'unnamed transfer syntax'} ({uid})"


_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def _valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, no leading zero in a component, at most 64 characters."""
    return isinstance(uid, str) and len(uid) <= 64 and _UID.fullmatch(uid) is not None


@dataclass(frozen=True)
class Profile:
    """The transfer syntaxes the receiver accepts: ``syntaxes`` in the order they were named,
    or None for ``all``; ``text`` is the canonical form (``uncompressed,jpeg2000``)."""

    text: str = ALL
    syntaxes: tuple[str, ...] | None = None

    @property
    def is_all(self) -> bool:
        return self.syntaxes is None

    def accepted(self) -> tuple[str, ...]:
        """Every transfer syntax this profile accepts (``all``: the standard's)."""
        return standard() if self.syntaxes is None else self.syntaxes

    def accepts(self, uid: str) -> bool:
        if self.syntaxes is None:
            return uid in _standard_set()
        return uid in self.syntaxes

    def choose(self, proposed: Iterable[str]) -> str | None:
        """Of the proposed transfer syntaxes, in the proposer's order, the first accepted."""
        return next((ts for ts in proposed if self.accepts(ts)), None)

    def describe(self) -> list[str]:
        """Each accepted syntax in words and UID (``all`` is not spelled out)."""
        if self.syntaxes is None:
            return [f"every standard transfer syntax ({len(standard())})"]
        return [syntax_name(uid) for uid in self.syntaxes]


DEFAULT_PROFILE = Profile()


def parse_profile(text: str | None) -> Profile:
    """A profile from its text: names of groups and transfer syntax UIDs, separated by commas.

    ``all`` anywhere makes the profile ``all``. ProfileError for an empty profile, an unknown
    name, a malformed UID, or a UID the standard gives to something other than a transfer
    syntax (a SOP class, say).
    """
    if text is None:
        return DEFAULT_PROFILE
    if not isinstance(text, str):
        raise ProfileError(f"a receiver profile is text such as 'uncompressed,jpeg2000', not {text!r}")
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise ProfileError("the receiver profile is empty: name 'all', groups such as 'uncompressed' "
                           "or transfer syntax UIDs")
    syntaxes: list[str] = []
    names: list[str] = []
    for part in parts:
        if not part:
            continue
        key = part.lower()
        if key == ALL:
            return DEFAULT_PROFILE
        if key in GROUPS:
            new = GROUPS[key]
        elif part[0].isdigit():
            new = (_checked_uid(part),)
        else:
            raise ProfileError(f"unknown transfer syntax group {part!r}: use {', '.join([ALL, *GROUPS])} "
                               "or a transfer syntax UID")
        if key not in names:
            names.append(key)
        syntaxes += [uid for uid in new if uid not in syntaxes]
    return Profile(",".join(names), tuple(syntaxes))


def _checked_uid(part: str) -> str:
    if not _valid_uid(part):
        raise ProfileError(f"{part!r} is not a valid UID (digits and dots, at most 64 characters)")
    entry = _uid_dictionary().get(part)
    if entry is not None and entry[1] != "Transfer Syntax":
        raise ProfileError(f"{part} is {entry[0]} ({entry[1]}), not a transfer syntax")
    return part


# ----------------------------------------------------------------------------------------------
# negotiation, as the acceptor
# ----------------------------------------------------------------------------------------------


# PS3.6 names these "... Storage ..." but neither stores an object over the network: Storage
# Commitment is a separate service (PS3.4 J) and the DICOMDIR class exists only on media.
_NOT_STORAGE = ("1.2.840.10008.1.20.1", "1.2.840.10008.1.20.2", "1.2.840.10008.1.3.10")
_STORAGE_SERVICES = ("StorageServiceClass", "NonPatientObjectStorageServiceClass")


def is_standard_storage_class(uid: str) -> bool:
    """Whether the standard defines ``uid`` as a storage SOP class, retired ones included.

    pynetdicom's table knows the current ones. A retired class is still what a PACS holds for
    an old study and proposes when it sends it (the 1990s Ultrasound Image Storage,
    1.2.840.10008.5.1.4.1.1.6, in a long-term archive; DCMTK's ``dcmqrscp`` proposes them on every
    C-MOVE), and a workstation that pulls priors takes them: PS3.6 names every one of them
    "... Storage ...", which pydicom's table of UIDs carries."""
    if library("pynetdicom.sop_class").uid_to_service_class(uid).__name__ in _STORAGE_SERVICES:
        return True
    entry = _uid_dictionary().get(uid)
    return (entry is not None and entry[1] == "SOP Class" and "Storage" in entry[0]
            and uid not in _NOT_STORAGE)


def storage_class_verdict(uid: str, policy: str = SOP_CLASSES_ANY) -> str | None:
    """Why the Store SCP refuses a proposed abstract syntax, or None when it takes it.

    Taken: every storage SOP class of the standard, retired ones included (see
    :func:`is_standard_storage_class`), Verification, and -- with the ``any`` policy -- every
    other valid UID the standard does not give to something else (a vendor's private storage
    class, a storage class newer than pydicom). Refused: a malformed UID, a standard UID that is
    not a storage SOP class (a query model, Storage Commitment, a transfer syntax, ...), and
    with ``standard`` every UID the standard does not define as a storage SOP class.
    """
    if not _valid_uid(uid):
        return "not a valid UID"
    if uid == VERIFICATION or is_standard_storage_class(uid):
        return None
    entry = _uid_dictionary().get(uid)
    if entry is not None:
        return f"not a storage SOP class ({entry[0]})"
    if policy == SOP_CLASSES_STANDARD:
        return "not a standard storage SOP class"
    return None


@dataclass(frozen=True)
class Decision:
    """What the acceptor answers for one proposed presentation context."""

    context_id: int
    abstract_syntax: str
    proposed: tuple[str, ...]  # the transfer syntaxes, in the proposer's order
    result: int  # PS3.8 9.3.3.2: 0 acceptance, 3 abstract syntax, 4 transfer syntaxes not supported
    transfer_syntax: str | None  # the one accepted
    why: str = ""  # for a refused SOP class: why

    @property
    def accepted(self) -> bool:
        return self.result == ACCEPTANCE

    @property
    def outcome(self) -> str:
        if self.accepted:
            return ACCEPTED
        return REJECTED_SOP_CLASS if self.result == ABSTRACT_SYNTAX_NOT_SUPPORTED else REJECTED_TRANSFER_SYNTAX


_VERIFICATION_PROFILE = Profile("verification", (IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE))


def decide(context_id: int, abstract_syntax: str, proposed: Iterable[str], profile: Profile,
           policy: str = SOP_CLASSES_ANY) -> Decision:
    """The acceptor's answer for one proposed context: the SOP class first, then the PACS's
    first proposed transfer syntax that ``profile`` accepts (Verification: its first
    uncompressed one, whatever the profile, as it carries no data set)."""
    proposed = tuple(proposed)
    why = storage_class_verdict(abstract_syntax, policy)
    if why is not None:
        return Decision(context_id, abstract_syntax, proposed, ABSTRACT_SYNTAX_NOT_SUPPORTED, None, why)
    chooser = _VERIFICATION_PROFILE if abstract_syntax == VERIFICATION else profile
    chosen = chooser.choose(proposed)
    if chosen is None:
        return Decision(context_id, abstract_syntax, proposed, TRANSFER_SYNTAXES_NOT_SUPPORTED, None)
    return Decision(context_id, abstract_syntax, proposed, ACCEPTANCE, chosen)


def negotiate(proposed: Iterable[PresentationContext], profile: Profile,
              policy: str = SOP_CLASSES_ANY) -> tuple[list[Decision], list[PresentationContext]]:
    """Every proposed context decided, and the result items of the A-ASSOCIATE-AC.

    No SCP/SCU role selection item is answered: the PACS is the Storage SCU and we the SCP,
    which are the default roles (PS3.7 D.3.3.4), whatever it proposed.
    """
    context = library("pynetdicom.presentation").PresentationContext
    decisions, results = [], []
    for cx in proposed:
        d = decide(int(cx.context_id), str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax],
                   profile, policy)
        decisions.append(d)
        item = context()
        item.context_id = d.context_id
        item.abstract_syntax = cx.abstract_syntax
        # A rejected item still carries a transfer syntax sub-item, whose value is ignored.
        first = d.transfer_syntax or (cx.transfer_syntax[0] if cx.transfer_syntax else EXPLICIT_VR_LE)
        item.transfer_syntax = [first]
        item.result = d.result
        results.append(item)
    return decisions, results
