"""The staged checks, one module (or package) per stage.

Importing this package registers nothing: the registry (:mod:`qrdoctor.core.registry`) imports
each check's module by name, as :data:`qrdoctor.core.catalog.CHECKS` lists them, and only those a
run selects (``check --only network.tcp`` imports no retrieve check).

Installed as ``qrdoctor.checks``; never import this folder as a top-level ``checks`` package.
"""
