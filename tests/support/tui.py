"""Helpers of the TUI tests: wait on a running Textual app, read what its terminal shows."""

from __future__ import annotations

import io
import time

from rich.console import Console


async def wait_for(pilot, condition, timeout: float = 40.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def screen_lines(app) -> list[str]:
    """What the terminal shows, line by line."""
    w, h = app.size
    console = Console(width=w, height=h, file=io.StringIO(), record=True, color_system=None,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()
