"""The run screen while the scheduler runs several checks at once."""

from __future__ import annotations

import threading
from functools import partial

import pytest

from qrdoctor.core.context import Outcome
from qrdoctor.core.model import Stage
from qrdoctor.core.options import RunOptions
from qrdoctor.core.registry import option_models
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.tui.app import QRDoctorApp
from qrdoctor.tui.render import RUNNING
from qrdoctor.tui.widgets import CheckRow

from support.run import adhoc_check
from support.tui import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

GO = threading.Event()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def held(ctx):
    GO.wait(20)
    return Outcome(summary="released")


CHECKS = [adhoc_check("match.one", Stage.MATCHING, "One", held),
          adhoc_check("match.two", Stage.MATCHING, "Two", held),
          adhoc_check("match.three", Stage.MATCHING, "Three", held)]




async def test_every_running_check_shows_as_running_at_once():
    # Given three independent checks that wait, and room for two associations at once
    GO.clear()
    options = RunOptions.from_flat({"max_associations": 2}, option_models(CHECKS))
    app = QRDoctorApp(Target("127.0.0.1", 9, "NOWHERE", timeout=2.0), checks=CHECKS, options=options,
                      runner_factory=partial(Runner, checks=CHECKS))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.run_screen

            def states() -> dict[str, str]:
                return {row.check.id: row.state for row in screen.query(CheckRow)}

            # Then the first two show as running together, the third waits for a free association
            await wait_for(pilot, lambda: list(states().values()).count(RUNNING) == 2, what="two running rows")
            assert states() == {"match.one": RUNNING, "match.two": RUNNING, "match.three": "waiting"}
            status = str(screen.query_one("#status").render())
            assert "match.one" in status and "match.two" in status
            # and the selected running check says what runs alongside it
            await pilot.pause(0.6)
            selected = screen.selected_id()
            other = ({"match.one", "match.two"} - {selected}).pop()
            assert f"Running alongside {other}." in str(screen.detail.render())
            GO.set()
            await wait_for(pilot, lambda: screen.report is not None, what="the end of the run")
            assert set(states().values()) == {"pass"}
    finally:
        GO.set()
