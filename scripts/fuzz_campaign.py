"""A long local fuzzing campaign: qrdoctor's engine, in-process, against the fuzzing peer.

Each session is one seeded run of the Runner (in-process, ``--timeout`` 1 s by default) against
``tests/support/fuzzpeer.py``, judged by ``tests/support/fuzzsession.py``: no traceback, no
``error`` from peer bytes, no hang, no file left, every report format rendered. Sessions run in
``--workers`` processes (each runs its sessions in-process, one after the other) and the
campaign reports the counts per kind of problem, every distinct failure (by category, exception
type and top frame) with the first seed that shows it, peak memory and the time it took::

    python scripts/fuzz_campaign.py --seeds 1:10001            # the 10,000-session campaign
    python scripts/fuzz_campaign.py --seeds 1:1001 --workers 2 --failures fuzz-failures.txt
    python scripts/fuzz_campaign.py --show 4711                # one seed again, in detail
    python scripts/fuzz_campaign.py --show 4711 --pin retrieve.get:12:cmd_elem_len   # one strike

Failing seeds go to ``--failures`` (one line each: seed, problem keys, mutations). Peak memory is
each worker's ``ru_maxrss`` and its resident size sampled every 50 ms; the campaign fails (exit
1) when any session had a problem or a worker went over ``--max-rss-mb`` (200 MB by default).
Run it from the repository root.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

_state: dict = {}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _sample_rss(stop: threading.Event) -> None:
    while not stop.wait(0.05):
        rss = _rss_mb()
        _state["rss_peak"] = max(_state.get("rss_peak", 0.0), rss)
        _state["session_peak"] = max(_state.get("session_peak", 0.0), rss)


def _worker_init(timeout: float, whole_share: float) -> None:
    """Each worker: its own scratch folder, the clean run's emission counts, an RSS sampler."""
    from support.fuzzsession import emission_counts

    warnings.simplefilter("ignore")  # pydicom warns about every invalid value the peer sends
    root = Path(tempfile.mkdtemp(prefix="qrdoctor-fuzz-"))
    _state.update(root=root, timeout=timeout, whole_share=whole_share, rss_peak=_rss_mb(),
                  counts=emission_counts(root, timeout))
    threading.Thread(target=_sample_rss, args=(threading.Event(),), daemon=True, name="fuzz-rss").start()


def _one(seed: int) -> dict:
    from support.fuzzsession import run_session

    _state["session_peak"] = start = _rss_mb()
    v = run_session(seed, _state["root"], _state["counts"], timeout=_state["timeout"],
                    whole_share=_state["whole_share"])
    return {"seed": seed, "seconds": v.seconds, "budget": v.budget, "mutations": v.mutations,
            "problems": [(p.category, p.key, p.detail) for p in v.problems],
            "summary": v.summary() if v.problems else "",
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_peak_mb": _state["rss_peak"], "pid": os.getpid(),
            "rss_growth_mb": max(_state["session_peak"], _rss_mb()) - start}


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def parse_range(text: str) -> range:
    start, _, stop = text.partition(":")
    return range(int(start), int(stop)) if stop else range(int(start), int(start) + 1)


class Tally:
    """What the campaign has seen so far."""

    CATEGORIES = ("hang", "traceback", "error", "files", "render", "peer")

    def __init__(self) -> None:
        self.sessions = 0
        self.failing: list[dict] = []
        self.by_category: collections.Counter = collections.Counter()
        self.distinct: dict[str, dict] = {}
        self.seconds: list[float] = []
        self.memory: dict[int, tuple[float, float]] = {}
        self.hungriest: list[tuple[float, int, list[str]]] = []  # (RSS growth MB, seed, mutations)

    def add(self, r: dict) -> None:
        self.sessions += 1
        self.seconds.append(r["seconds"])
        self.memory[r["pid"]] = (r["maxrss_mb"], r["rss_peak_mb"])
        self.hungriest = sorted([*self.hungriest, (r["rss_growth_mb"], r["seed"], r["mutations"])], reverse=True)[:5]
        if not r["problems"]:
            return
        self.failing.append(r)
        for category in {c for c, _k, _d in r["problems"]}:
            self.by_category[category] += 1
        for _category, key, detail in r["problems"]:
            d = self.distinct.setdefault(key, {"count": 0, "seeds": [], "detail": detail, "summary": r["summary"]})
            d["count"] += 1
            if len(d["seeds"]) < 5:
                d["seeds"].append(r["seed"])

    def peak(self) -> tuple[float, float]:
        return (max((m for m, _s in self.memory.values()), default=0.0),
                max((s for _m, s in self.memory.values()), default=0.0))

    def report(self, wall: float, max_rss_mb: float) -> str:
        secs = sorted(self.seconds) or [0.0]
        maxrss, sampled = self.peak()
        lines = [
            f"sessions: {self.sessions} in {wall:.0f} s ({wall / 60:.1f} min, {self.sessions / max(wall, 1e-9):.1f}/s); "
            f"session time mean {sum(secs) / len(secs):.2f} s, p95 {secs[int(0.95 * (len(secs) - 1))]:.2f} s, "
            f"max {secs[-1]:.1f} s",
            "sessions with a problem: " + str(len(self.failing)) + " ("
            + ", ".join(f"{c} {self.by_category.get(c, 0)}" for c in self.CATEGORIES) + ")",
            f"  hangs {self.by_category.get('hang', 0)}, tracebacks {self.by_category.get('traceback', 0)}, "
            f"error results from peer bytes {self.by_category.get('error', 0)}",
            f"peak memory per worker: ru_maxrss {maxrss:.0f} MB, sampled RSS {sampled:.0f} MB "
            f"({'under' if max(maxrss, sampled) < max_rss_mb else 'OVER'} {max_rss_mb:.0f} MB)",
            "sessions that grew the resident size most: " + "; ".join(
                f"seed {seed} +{mb:.0f} MB ({', '.join(m.split(' ', 1)[1] for m in muts) or 'no mutation'})"
                for mb, seed, muts in self.hungriest),
            f"distinct failures: {len(self.distinct)}",
        ]
        for key, d in sorted(self.distinct.items(), key=lambda kv: -kv[1]["count"]):
            lines.append(f"  {d['count']:5d}x {key}  (seeds {', '.join(map(str, d['seeds']))})")
        return "\n".join(lines)


def write_failures(path: Path, failing: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in sorted(failing, key=lambda r: r["seed"]):
            keys = "; ".join(sorted({k for _c, k, _d in r["problems"]}))
            fh.write(f"{r['seed']}\t{keys}\t{' | '.join(r['mutations'])}\n")


def show(seed: int, timeout: float, whole_share: float, pin: str | None) -> int:
    from support.fuzzsession import Pin, emission_counts, run_session

    root = Path(tempfile.mkdtemp(prefix="qrdoctor-fuzz-"))
    pinned = None
    if pin:
        check, emission, operator = pin.split(":")
        pinned = Pin(check, int(emission), operator)
    v = run_session(seed, root, emission_counts(root, timeout), timeout=timeout, whole_share=whole_share,
                    pin=pinned)
    print(v.summary() if v.problems else v.summary() + "\n  no problem")
    for p in v.problems:
        print(f"\n--- {p.key}\n{p.detail}")
    return 0 if v.ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1:10001", help="seed range START:STOP (default 1:10001)")
    ap.add_argument("--workers", type=int, default=4,
                    help="processes, each running sessions in-process (they mostly wait: two per core)")
    ap.add_argument("--timeout", type=float, default=1.0, help="qrdoctor's network timeout per session")
    ap.add_argument("--whole-share", type=float, default=0.1, help="share of sessions that run every check")
    ap.add_argument("--failures", default="fuzz-failures.txt", help="file for the failing seeds")
    ap.add_argument("--max-rss-mb", type=float, default=200.0)
    ap.add_argument("--stuck-s", type=float, default=300.0, help="give up when no session ends for this long")
    ap.add_argument("--show", type=int, help="run one seed and show its problems in full")
    ap.add_argument("--pin", help="with --show: strike only CHECK:EMISSION:OPERATOR (as a session's "
                                  "mutation line says: check#emission KIND operator)")
    args = ap.parse_args(argv)
    if args.show is not None:
        return show(args.show, args.timeout, args.whole_share, args.pin)

    seeds = parse_range(args.seeds)
    tally = Tally()
    t0 = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(args.workers, initializer=_worker_init, initargs=(args.timeout, args.whole_share))
    stuck = interrupted = False
    signal.signal(signal.SIGTERM, _stop)  # a SIGTERM ends the campaign with the report so far
    try:
        results = pool.imap_unordered(_one, seeds)  # chunksize 1: .next(timeout) exists
        for _ in seeds:
            try:
                r = results.next(timeout=args.stuck_s)
            except multiprocessing.TimeoutError:
                stuck = True
                print(f"no session ended for {args.stuck_s:.0f} s: a worker is stuck", flush=True)
                break
            tally.add(r)
            if r["problems"]:
                print(f"seed {r['seed']}: " + "; ".join(sorted({k for _c, k, _d in r["problems"]})), flush=True)
                write_failures(Path(args.failures), tally.failing)
            if tally.sessions % 500 == 0:
                print(f"... {tally.sessions} sessions, {len(tally.failing)} with problems, "
                      f"{time.monotonic() - t0:.0f} s", flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        pool.terminate()
        pool.join()
    wall = time.monotonic() - t0
    print()
    if interrupted:
        print(f"INTERRUPTED after {tally.sessions} of {len(seeds)} sessions; the figures below are for those")
    print(tally.report(wall, args.max_rss_mb))
    write_failures(Path(args.failures), tally.failing)
    print(f"failing seeds written to {args.failures}")
    for key, d in tally.distinct.items():
        print(f"\n=== {key} (first seed {d['seeds'][0]})\n{d['summary']}")
    maxrss, sampled = tally.peak()
    ok = not tally.failing and not stuck and not interrupted and max(maxrss, sampled) < args.max_rss_mb
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
