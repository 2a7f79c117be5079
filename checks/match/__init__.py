"""Stage 4: matching behaviour — PN wildcards and case, DA/TM ranges, list matching.

Every probe is derived from data the PACS itself returned and is restricted to one patient (by
Patient ID) or one study, so its expected answer is known exactly and the probe stays cheap.
Importing the package registers match.wildcards, match.ranges and match.lists, in that order.
"""

from qrdoctor.checks.match import wildcards  # noqa: I001 - registration order is the run order
from qrdoctor.checks.match import ranges
from qrdoctor.checks.match import lists

__all__ = ["lists", "ranges", "wildcards"]
