"""The staged checks, one module per stage. Importing this package registers them all.

Installed as ``qrdoctor.checks``; never import this folder as a top-level ``checks`` package.
"""

from . import association, matching, network, query, retrieve  # noqa: F401
