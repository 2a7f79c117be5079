"""Many simulated PACSes in one process (the fleet benchmark runs 200): an idle one costs nothing.

Each listener's accept loop waits for a connection or for stop(); it does not poll. A polling
loop (socketserver's, every 50 ms, with pynetdicom's full garbage collection every 60th wake-up)
made 200 idle listeners take the GIL thousands of times a second, and stop() wait for the next
wake-up.
"""

from __future__ import annotations

import gc
import time

from qrdoctor.simulator import SimulatedPACS


def test_idle_simulators_collect_no_garbage_and_stop_at_once(monkeypatch):
    # Given forty simulated PACSes listening in this process, idle
    pacses = [SimulatedPACS(ae_title=f"IDLE{i:02d}", studies=3, seed=i + 1).start() for i in range(40)]
    collections: list[int] = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(1) or real_collect(*a))
    try:
        # When they sit idle for longer than the old loop's garbage-collection period (60 x 50 ms)
        time.sleep(3.3)
    finally:
        # ... and are then stopped one after another
        t0 = time.perf_counter()
        for p in pacses:
            p.stop()
        took = time.perf_counter() - t0
    # Then no listener forced a garbage collection, and none made stop() wait for a wake-up
    assert collections == []
    assert took < 0.5, f"stopping 40 idle simulators took {took:.2f} s"
    assert not any(p.running for p in pacses)

