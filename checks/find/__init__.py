"""Stage 3: what the PACS really answers to C-FIND -- every level (find.levels), whether the
answers are shaped as the standard says (find.conformance), the keys it returns
(find.return_keys), and whether it silently caps the number of matches (find.match_limit).

Importing this package registers nothing: the registry imports each check's module by name when
a run selects it (:data:`qrdoctor.core.catalog.CHECKS`), in the catalog's order. The option
model lives in :mod:`.options`, which imports no DICOM library, so that the command line can
validate ``--probe-limit`` before any check's module is loaded.
"""
