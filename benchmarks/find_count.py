"""Benchmark: counting C-FIND matches — qrdoctor's counter next to DCMTK's findscu.

Starts a local Orthanc (Debian's package) on loopback, loads N instances, and runs an
IMAGE-level Study Root C-FIND that matches every instance, several times with each client:

* qrdoctor: ``FindAssociation.find`` counting responses (in-process: association + query + release),
  and the same as a whole process (``python -c``), so the import cost is visible;
* DCMTK ``findscu`` (whole process), counting the responses it reports.

It also records the peak Python memory of the counter for a small and a large answer, to show
that counting streams (memory stays flat as matches grow). ``--python PATH`` runs the
whole-process counter with another checkout's qrdoctor (the in-process figures are this
interpreter's). benchmarks/full_run.py measures the whole-process pair too, next to the other
figures. Run from the repository root:

    python benchmarks/find_count.py [--instances 3072] [--runs 5] [--python PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc

import wholeprocess as wp
from pydicom import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT

from qrdoctor.dicom.find import FindAssociation

from support.corpus import make_corpus
from support.orthanc import OrthancServer


def image_query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.SOPInstanceUID = ""
    return ds


def count_in_process(port: int, aet: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    with FindAssociation("127.0.0.1", port, "QRDOCTOR", aet, [STUDY_ROOT], 30) as fa:
        out = fa.find(STUDY_ROOT, image_query())
    return out.matches, time.perf_counter() - t0


def count_process(port: int, aet: str, python: str = sys.executable) -> tuple[int, float]:
    matches, t = wp.count_qrdoctor(python, port, aet)
    return matches, t.seconds


def count_findscu(port: int, aet: str) -> tuple[int, float]:
    matches, t = wp.count_findscu(port, aet)
    return matches, t.seconds


def peak_memory(port: int, aet: str, max_matches: int) -> int:
    tracemalloc.start()
    with FindAssociation("127.0.0.1", port, "QRDOCTOR", aet, [STUDY_ROOT], 30) as fa:
        fa.find(STUDY_ROOT, image_query(), max_matches=max_matches)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=3072)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter of the whole-process counter (default: this one)")
    args = ap.parse_args()
    studies = max(1, args.instances // 4)
    corpus = make_corpus(studies, series_per_study=2, instances_per_series=2, seed=7)
    with OrthancServer(config={"DicomAlwaysAllowFind": True, "LimitFindInstances": 0,
                                     "LimitFindResults": 0}) as pacs:
        pacs.upload(corpus)
        n = len(corpus)
        print(f"Orthanc {pacs.dicom_port}: {n} instances; IMAGE-level C-FIND matching all of them; "
              f"median of {args.runs} runs\n")
        rows = []
        for label, fn in (("qrdoctor counter (in-process)", count_in_process),
                          ("qrdoctor counter (whole process)",
                           lambda port, aet: count_process(port, aet, args.python)),
                          ("DCMTK findscu (whole process)", count_findscu)):
            fn(pacs.dicom_port, pacs.aet)  # warm-up
            times, counts = [], set()
            for _ in range(args.runs):
                c, t = fn(pacs.dicom_port, pacs.aet)
                times.append(t)
                counts.add(c)
            med = statistics.median(times)
            rows.append((label, med, counts))
        base = rows[2][1]
        print(f"{'client':<34} {'wall s':>8} {'matches/s':>10} {'vs findscu':>10}  matches")
        for label, med, counts in rows:
            c = max(counts)
            print(f"{label:<34} {med:8.3f} {c / med:10.0f} {base / med:9.2f}x  {sorted(counts)}")
        small = peak_memory(pacs.dicom_port, pacs.aet, max(1, n // 10))
        large = peak_memory(pacs.dicom_port, pacs.aet, n)
        print(f"\npeak Python memory while counting: {n // 10} matches {small / 1024:.0f} KiB, "
              f"{n} matches {large / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
