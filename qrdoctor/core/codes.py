"""The one list of finding codes.

A finding code is a stable identifier: it appears in the JSON report, `qrdoctor explain CODE`
prints its long explanation (``explanations/<code>.md``), and it is never reused. Adding one is
an entry here, its explanation file and a test that triggers it; the check that emits it names it
in its ``codes=`` declaration (the runner refuses a finding whose code its check did not declare).
``tests/test_contracts.py`` proves that this list, the explanation files and the checks'
declarations agree; ``tests/conftest.py`` proves, on a full run, that every code is triggered by
at least one test.

A retired code moves from :data:`CODES` to :data:`RETIRED`; its explanation file stays, with a
line starting ``Retired:`` that says why and what replaced it.
"""

from __future__ import annotations

NETWORK = (
    "dns-unresolved",
    "tcp-refused",
    "tcp-timeout",
    "tcp-unreachable",
    "tls-handshake-failed",
    "tls-certificate-expiring",
)

# Why an association could not be opened: every stage that associates can report these.
ASSOCIATION_FAILURES = (
    "not-dicom",
    "peer-silent",
    "tls-required",
    "peer-closed",
    "calling-ae-rejected",
    "called-ae-rejected",
    "association-rejected",
    "association-aborted",
    "peer-protocol-error",
)

ASSOCIATION = (
    "verification-not-offered",
    "echo-failed",
    "called-ae-not-checked",
    "calling-ae-not-checked",
    "model-not-offered",
)

QUERY = (
    "query-refused",
    "find-level-failed",
    "no-studies",
    "universal-query-empty",
    "return-key-empty",
    "match-limit",
    "find-cancel-ignored",
    "find-cancel-drops-association",
    "find-duplicate-rows",
    "find-level-nonconformant",
    "find-charset-missing",
    "find-charset-inconsistent",
)

MATCHING = (
    "pn-case-sensitive",
    "pn-family-name-only",
    "pn-per-component",
    "wildcard-unsupported",
    "pn-exact-mismatch",
    "pn-non-ascii",
    "range-unsupported",
    "list-unsupported",
)

RETRIEVE = (
    "retrieve-key-mismatch",
    "retrieve-refused",
    "service-not-permitted",
    "retrieve-stalled",
    "retrieve-slow",
    "retrieve-no-data",
    "retrieve-unexpected-data",
    "retrieve-limit-exceeded",
    "retrieve-format-not-offered",
    "retrieve-conversion-failed",
    "store-port-unavailable",
    "move-destination-unknown",
    "move-no-inbound",
    "move-silent-failure",
    "move-suboperations-failed",
    "move-inbound-refused",
    "move-called-ae-mismatch",
    "move-unexpected-sender",
    "move-inbound-other-caller",
    "move-inbound-tls",
    "move-inbound-pdu-oversized",
    "get-unsupported",
    "get-role-rejected",
    "get-silent-failure",
    "get-suboperations-failed",
)

DICOMWEB_QIDO = (
    "dicomweb-unreachable",
    "dicomweb-tls-failed",
    "dicomweb-not-dicomweb",
    "dicomweb-wrong-root",
    "dicomweb-auth-required",
    "dicomweb-auth-rejected",
    "dicomweb-forbidden",
    "dicomweb-server-error",
    "dicomweb-truncated",
    "dicomweb-paging-ignored",
    "dicomweb-limit-refused",
    "dicomweb-includefield-ignored",
    "dicomweb-parity",
)

DICOMWEB_WADO = (
    "dicomweb-metadata-failed",
    "dicomweb-format-refused",
    "dicomweb-multipart-malformed",
    "dicomweb-retrieve-url-mismatch",
    "dicomweb-instance-unreadable",
)

CODES: tuple[str, ...] = (NETWORK + ASSOCIATION_FAILURES + ASSOCIATION + QUERY + MATCHING + RETRIEVE + DICOMWEB_QIDO
                          + DICOMWEB_WADO)
"""Every code a check may emit today."""

RETIRED: tuple[str, ...] = ()
"""Codes no check emits any more; their explanation files stay, and they are never reused."""

