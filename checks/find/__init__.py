"""Stage 3: what the PACS really answers to C-FIND -- every level (find.levels), whether the
answers are shaped as the standard says (find.conformance), the keys it returns
(find.return_keys), and whether it silently caps the number of matches (find.match_limit).
Importing this package registers the four checks."""

# The checks run in the order they are imported: levels, conformance, return_keys, match_limit.
# isort: off
from qrdoctor.checks.find import levels  # noqa: F401
from qrdoctor.checks.find import conformance  # noqa: F401
from qrdoctor.checks.find import return_keys  # noqa: F401
from qrdoctor.checks.find import match_limit  # noqa: F401
# isort: on
from qrdoctor.checks.find.levels import LevelsLearned
from qrdoctor.checks.find.match_limit import MatchLimitOptions
from qrdoctor.checks.shared import ASSOCIATION_CODES, association_failure

__all__ = ["ASSOCIATION_CODES", "LevelsLearned", "MatchLimitOptions", "association_failure"]
