"""The checks as ``qrdoctor checks`` lists them, without importing any check.

The registry (:mod:`qrdoctor.core.registry`) is the truth: a check's module declares it with
``define()``, and importing the check modules imports pynetdicom, pydicom and pydantic (0.3 s or
more). Listing the checks must start instantly, so this module keeps their id, stage, title and
requirements as plain data, in the order they run. ``tests/test_startup.py`` proves it equals
the registry, so a check added, renamed or re-ordered without updating this table fails the suite.
"""

from __future__ import annotations

from typing import NamedTuple


class CheckEntry(NamedTuple):
    stage: str  # the stage's label (Stage.label)
    id: str
    title: str
    requires: tuple[str, ...] = ()


CHECKS: tuple[CheckEntry, ...] = (
    CheckEntry("network", "network.tcp", "TCP reachability"),
    CheckEntry("network", "network.tls", "TLS handshake", ("network.tcp",)),
    CheckEntry("association", "association.echo", "DICOM association and C-ECHO",
               ("network.tcp", "network.tls")),
    CheckEntry("association", "association.ae_titles", "AE title checks", ("association.echo",)),
    CheckEntry("association", "association.models", "Query/Retrieve information models",
               ("association.echo",)),
    CheckEntry("query", "find.levels", "C-FIND at every level", ("association.models",)),
    CheckEntry("query", "find.conformance", "Shape of the C-FIND answers", ("find.levels",)),
    CheckEntry("query", "find.return_keys", "Returned keys", ("find.levels",)),
    CheckEntry("query", "find.match_limit", "Match limit", ("find.levels",)),
    CheckEntry("matching", "match.wildcards", "Patient name wildcards and case", ("find.levels",)),
    CheckEntry("matching", "match.ranges", "Date and time range matching", ("find.levels",)),
    CheckEntry("matching", "match.lists", "List matching (CS and UI)", ("find.levels",)),
    CheckEntry("retrieve", "retrieve.get", "C-GET round trip", ("network.tcp", "find.levels")),
    CheckEntry("retrieve", "retrieve.move", "C-MOVE round trip", ("network.tcp", "find.levels")),
)
