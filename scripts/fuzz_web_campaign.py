"""Long DICOMweb fuzzing campaigns: many seeded sessions of tests/support/fuzzwebsession.py.

    python scripts/fuzz_web_campaign.py --seeds 1-3000 --workers 2
    python scripts/fuzz_web_campaign.py --show 1234          # one session, in full
    python scripts/fuzz_web_campaign.py --pin 1234:5:json_deep  # seed, emission, operator

Prints one line per distinct problem (category, exception, frame) with the seeds that show it,
the number of sessions, and the slowest session.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fuzzwebmutate import OPERATORS  # noqa: E402
from support.fuzzwebsession import clean_count, run_web_session  # noqa: E402


def _one(job: int | tuple[int, int, str]) -> tuple[object, float, list[tuple[str, str]], list[str], dict]:
    if isinstance(job, tuple):
        v = run_web_session(job[0], pin=(job[1], job[2]))
    else:
        v = run_web_session(job, clean_count())
    return job, v.seconds, [(p.key, p.detail) for p in v.problems], v.mutations, v.statuses


def _range(text: str) -> range:
    a, _, b = text.partition("-")
    return range(int(a), int(b or a) + 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=_range, default=range(1, 1001))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--show", type=int, help="run one seed and print its verdict in full")
    ap.add_argument("--pin", help="SEED:EMISSION:OPERATOR, one mutation named outright")
    ap.add_argument("--sweep", action="store_true",
                    help="every operator at every emission of a clean session, once per seed of --seeds")
    args = ap.parse_args(argv)
    if args.show is not None or args.pin:
        if args.pin:
            seed, emission, op = args.pin.split(":")
            v = run_web_session(int(seed), pin=(int(emission), op))
        else:
            v = run_web_session(args.show, clean_count())
        print(v.summary())
        return 0 if v.ok else 1
    t0 = time.monotonic()
    problems: dict[str, list] = collections.defaultdict(list)
    details: dict[str, str] = {}
    ops: collections.Counter[str] = collections.Counter()
    slowest: tuple[float, object] = (0.0, 0)
    done = 0
    jobs: list = list(args.seeds)
    if args.sweep:
        jobs = [(s, e, op) for s in args.seeds for e in range(clean_count()) for op in OPERATORS]
    with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=200) as pool:
        for seed, seconds, found, mutations, _ in pool.imap_unordered(_one, jobs, chunksize=4):
            done += 1
            slowest = max(slowest, (seconds, seed), key=lambda x: x[0])
            ops.update(m.split(":", 1)[1] for m in mutations)
            for key, detail in found:
                problems[key].append(seed)  # type: ignore[arg-type]
                details.setdefault(key, detail)
    print(f"{done} sessions in {time.monotonic() - t0:.0f} s; slowest seed {slowest[1]} ({slowest[0]:.1f} s); "
          f"{sum(ops.values())} mutations applied")
    print("operators:", dict(sorted(ops.items())))
    for key, seeds in sorted(problems.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(seeds):5d}  {key}  seeds {sorted(seeds, key=str)[:10]}")
        print("       " + details[key].strip().splitlines()[-1][:300] if details[key].strip() else "")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
