"""The interactive TUI (Textual). The headless core never imports this package.

``run_tui(target=None, *, options=None, include_phi=False, title=None) -> int`` opens the connection form when no
target is given, otherwise runs the staged checks at once; it returns the exit code of the last
run (like ``qrdoctor check``: 0, 1 or 3), or 0 when the user quit before running anything.
``include_phi=True`` shows patient data unredacted (and exports it); ``options`` are the
checks' typed options (:class:`qrdoctor.core.options.RunOptions`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qrdoctor.core.target import Target

__all__ = ["run_tui"]


def run_tui(target: Target | None = None, *, options=None, include_phi: bool = False,
            title: str | None = None) -> int:
    from qrdoctor.tui.app import run_tui as _run_tui

    return _run_tui(target, options=options, include_phi=include_phi, title=title)
