"""One lock for importing the DICOM libraries while more than one thread may do it.

The runner imports the later checks' modules in a background thread while the first checks run
(see :mod:`qrdoctor.core.runner`), and those checks import parts of pynetdicom or pydicom when
they need them (a SOP class table, a status description). Two threads importing pydicom at once
can leave one of them with a half-initialised package (CPython breaks what it takes for a
deadlock between two module locks by letting one thread see the module unfinished). Every such
import goes through :func:`library`, and the background loader holds :data:`LIBRARIES` while it
imports a module: one import of these libraries at a time.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

LIBRARIES = threading.RLock()


def library(name: str) -> ModuleType:
    """``importlib.import_module(name)``, one thread at a time (instant once it is imported)."""
    with LIBRARIES:
        return importlib.import_module(name)
