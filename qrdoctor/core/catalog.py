"""The checks and their options as plain data, without importing any check.

The registry (:mod:`qrdoctor.core.registry`) is the truth: a check's module declares it with
``define()``, and importing the check modules imports pynetdicom, pydicom and pydantic (0.3 s or
more). Listing the checks must start instantly, ``check --help`` must list every check's options,
and ``check --only network.tcp`` should import the network check and nothing of the retrieve
checks; so this module keeps

* :data:`CHECKS`: each check's id, stage, title, requirements and the module whose import
  registers it, in the order they run (the registry loads only the modules a run selects);
* :data:`OPTIONS`: each field of the checks' option models (and of the run's own
  ``SchedulingOptions``), as the command line offers it, with the first check declaring it;
* :data:`OPTION_MODELS` and :data:`ENABLED_BY`: where each option model lives and which checks
  an option enables, so that options are validated without loading any check.

``tests/test_startup.py`` proves both equal the registry, so a check or an option added, renamed
or re-ordered without updating these tables fails the suite.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CheckEntry(NamedTuple):
    stage: str  # the stage's label (Stage.label)
    id: str
    title: str
    requires: tuple[str, ...] = ()
    module: str = ""  # importing it registers the check (and the checks it imports)
    # What the runner schedules with before the check's module is in (see core/runner.py):
    budget: float = 4.0  # the check's deadline, in multiples of the network timeout (+2 s)
    after: tuple[str, ...] = ()  # checks it reads when they are in the run (Check.after)


CHECKS: tuple[CheckEntry, ...] = (
    CheckEntry("network", "network.tcp", "TCP reachability",
               (), "qrdoctor.checks.network", 3.0),
    CheckEntry("network", "network.tls", "TLS handshake",
               ("network.tcp",), "qrdoctor.checks.network", 2.0),
    CheckEntry("association", "association.echo", "DICOM association and C-ECHO",
               ("network.tcp", "network.tls"), "qrdoctor.checks.association", 3.0),
    CheckEntry("association", "association.ae_titles", "AE title checks",
               ("association.echo",), "qrdoctor.checks.association", 3.0),
    CheckEntry("association", "association.models", "Query/Retrieve information models",
               ("association.echo",), "qrdoctor.checks.association", 2.0),
    CheckEntry("query", "find.levels", "C-FIND at every level",
               ("association.models",), "qrdoctor.checks.find.levels", 6.0),
    CheckEntry("query", "find.conformance", "Shape of the C-FIND answers",
               ("find.levels",), "qrdoctor.checks.find.conformance", 2.0),
    CheckEntry("query", "find.return_keys", "Returned keys",
               ("find.levels",), "qrdoctor.checks.find.return_keys", 1.0),
    CheckEntry("query", "find.match_limit", "Match limit",
               ("find.levels",), "qrdoctor.checks.find.match_limit", 8.0),
    CheckEntry("matching", "match.wildcards", "Patient name wildcards and case",
               ("find.levels",), "qrdoctor.checks.match.wildcards", 5.0),
    CheckEntry("matching", "match.ranges", "Date and time range matching",
               ("find.levels",), "qrdoctor.checks.match.ranges", 4.0),
    CheckEntry("matching", "match.lists", "List matching (CS and UI)",
               ("find.levels",), "qrdoctor.checks.match.lists", 4.0),
    CheckEntry("retrieve", "retrieve.get", "C-GET round trip",
               ("network.tcp", "find.levels"), "qrdoctor.checks.retrieve.get", 10.0),
    CheckEntry("retrieve", "retrieve.move", "C-MOVE round trip",
               ("network.tcp", "find.levels"), "qrdoctor.checks.retrieve.move", 10.0),
    CheckEntry("dicomweb", "dicomweb.qido", "QIDO-RS queries",
               (), "qrdoctor.checks.dicomweb.qido", 8.0, ("association.models",)),
    CheckEntry("dicomweb", "dicomweb.wado", "WADO-RS retrieval",
               ("dicomweb.qido",), "qrdoctor.checks.dicomweb.wado", 12.0),
)


# What the command line needs of the checks before it loads any of them (both equal to the
# registry, tests/test_startup.py): the checks an option must enable (``define(enabled_by=...)``)
# and the option model of every check declaring one, as "module:Class" of a module that imports
# no DICOM library.
ENABLED_BY: dict[str, str] = {"dicomweb.qido": "dicomweb", "dicomweb.wado": "dicomweb"}
OPTION_MODELS: dict[str, str] = {
    "find.match_limit": "qrdoctor.checks.find.options:MatchLimitOptions",
    "retrieve.get": "qrdoctor.checks.retrieve.options:RetrieveOptions",
    "retrieve.move": "qrdoctor.checks.retrieve.options:RetrieveOptions",
    "dicomweb.qido": "qrdoctor.checks.dicomweb.options:DicomwebOptions",
    "dicomweb.wado": "qrdoctor.checks.dicomweb.options:DicomwebOptions",
}

class OptionEntry(NamedTuple):
    name: str  # the field's name; its flag is --name-with-dashes
    kind: str  # "int", "float", "str" or "bool"
    optional: bool  # None ("not set") is allowed
    default: Any
    check: str  # the first check (in run order) whose options declare it; "" for the run's own
    description: str


OPTIONS: tuple[OptionEntry, ...] = (
    OptionEntry("probe_limit", "int", False, 5000, "find.match_limit",
                "how many matches find.match_limit counts before it stops looking"),
    OptionEntry("study", "str", True, None, "retrieve.get",
                "Study Instance UID to retrieve (default: a small series qrdoctor picks)"),
    OptionEntry("series", "str", True, None, "retrieve.get", "Series Instance UID to retrieve"),
    OptionEntry("patient_id", "str", True, None, "retrieve.get",
                "do what a workstation does for this patient: find their studies, retrieve from "
                "the most recent (or --study)"),
    OptionEntry("issuer", "str", True, None, "retrieve.get",
                "Issuer of Patient ID that goes with --patient-id"),
    OptionEntry("retrieve", "str", False, "series", "retrieve.get",
                "with --patient-id: retrieve one series of the study, or the whole study "
                "('series' or 'study')"),
    OptionEntry("workstation_timeout", "float", False, 30.0, "retrieve.get",
                "seconds a workstation waits for a retrieve; a slower PACS gets a warning"),
    OptionEntry("keep_files", "str", True, None, "retrieve.get",
                "keep the received objects in this folder"),
    OptionEntry("listen_host", "str", False, "0.0.0.0", "retrieve.get",
                "address the temporary Store SCP listens on"),
    OptionEntry("stall_s", "float", True, None, "retrieve.get",
                "seconds without progress after which a retrieve counts as stalled (default: "
                "twice the timeout, at least 1)"),
    OptionEntry("max_object_mb", "int", False, 512, "retrieve.get",
                "largest object the retrieve receiver takes, in MiB; a larger one aborts the "
                "retrieve"),
    OptionEntry("max_total_mb", "int", False, 4096, "retrieve.get",
                "most data one retrieve may deliver, in MiB; more aborts the retrieve"),
    OptionEntry("store_accept", "str", False, "all", "retrieve.get",
                "transfer syntaxes the temporary Store SCP accepts, like a workstation's "
                "receiver: 'all', groups (uncompressed, deflated, jpeg-baseline, jpeg-extended, "
                "jpeg-lossless, jpeg-ls, jpeg2000, htj2k, rle) or UIDs, combined with commas"),
    OptionEntry("store_tls_cert", "str", True, None, "retrieve.get",
                "run the temporary Store SCP over DICOM TLS with this certificate (PEM)"),
    OptionEntry("store_tls_key", "str", True, None, "retrieve.get",
                "private key (PEM) of --store-tls-cert, when not in the certificate file"),
    OptionEntry("store_tls_ca", "str", True, None, "retrieve.get",
                "CA (PEM) whose client certificate the PACS must present to the TLS Store SCP"),
    OptionEntry("expect_inbound_ae", "str", True, None, "retrieve.get",
                "AE title the PACS is expected to call back from on a C-MOVE (a different one "
                "is a warning)"),
    OptionEntry("dicomweb", "str", True, None, "dicomweb.qido",
                "DICOMweb base URL (http or https) to check QIDO-RS and WADO-RS at, e.g. "
                "https://pacs.example.org/dicom-web/; without it no dicomweb check runs"),
    OptionEntry("dicomweb_user", "str", True, None, "dicomweb.qido",
                "user for HTTP Basic authentication at --dicomweb; the password is read from the "
                "environment variable QRDOCTOR_DICOMWEB_PASSWORD, never from the command line"),
    OptionEntry("dicomweb_token_file", "str", True, None, "dicomweb.qido",
                "file holding a bearer token (OAuth 2 / JWT) for --dicomweb"),
    OptionEntry("dicomweb_ca", "str", True, None, "dicomweb.qido",
                "certificate authority (PEM) to trust for an https --dicomweb URL (default: the "
                "system's)"),
    OptionEntry("max_associations", "int", False, 2, "",
                "At most this many associations with the PACS at once (default 2): checks whose "
                "requirements are met run side by side up to this bound; when the PACS turns "
                "one of them away while another of ours is open, that check is run again on "
                "its own, the report says so, and the rest of the run takes one at a time. "
                "1 runs the checks one after another."),
)


def requirement_closure(ids: list[str] | tuple[str, ...]) -> list[str]:
    """The given check ids and every check they require, directly or not, in run order; ids the
    table does not know are left out."""
    by_id = {e.id: e for e in CHECKS}
    wanted: set[str] = set()
    pending = [i for i in ids if i in by_id]
    while pending:
        cid = pending.pop()
        if cid not in wanted and cid in by_id:
            wanted.add(cid)
            pending.extend(by_id[cid].requires)
    return [e.id for e in CHECKS if e.id in wanted]
