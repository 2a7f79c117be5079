"""The option of the C-FIND checks, in a module of its own: the command line validates
``--probe-limit`` with it before any check's module (and the DICOM libraries they import) is
loaded."""

from __future__ import annotations

from pydantic import Field

from qrdoctor.core.options import Options

DEFAULT_PROBE_LIMIT = 5000  # how many matches find.match_limit counts before it stops looking


class MatchLimitOptions(Options):
    probe_limit: int = Field(DEFAULT_PROBE_LIMIT, ge=1, le=1_000_000,
                             description="how many matches find.match_limit counts before it stops looking")
