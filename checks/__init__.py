"""The staged checks, one module (or package) per stage. Importing this package registers them.

Installed as ``qrdoctor.checks``; never import this folder as a top-level ``checks`` package.
"""

from qrdoctor.checks import association, find, match, network, retrieve  # noqa: F401
