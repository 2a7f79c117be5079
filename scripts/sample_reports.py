"""Regenerate sample_reports/: real reports from the simulated PACS and from real servers.

    python scripts/sample_reports.py            # all three: demo simulator, Orthanc, dcmqrscp
    python scripts/sample_reports.py --only demo

The demo and Orthanc runs include the DICOMweb stage. Every report is redacted (no patient data). The Orthanc and dcmqrscp runs start private
servers on loopback with the test harness (tests/support/); they need Debian's orthanc and
dcmtk packages. tests/test_sample_reports.py checks that the simulator's samples still match
what qrdoctor reports today.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sample_reports"
sys.path.insert(0, str(ROOT / "tests"))

from support.ports import free_port  # noqa: E402


@contextmanager
def demo_target() -> Iterator[tuple]:
    from qrdoctor.core.target import Target
    from qrdoctor.simulator import demo_pacs

    store = free_port()
    with demo_pacs(store).start() as pacs:
        yield (Target("127.0.0.1", pacs.port, pacs.ae_title, store_port=store, advertise="127.0.0.1", timeout=5),
               {"dicomweb": pacs.dicomweb_url})


@contextmanager
def orthanc_target() -> Iterator[tuple]:
    from qrdoctor.core.target import Target

    from support.corpus import make_corpus
    from support.orthanc import OrthancServer

    store = free_port()
    config = {"DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowGet": True,
              "DicomModalities": {"qrdoctor": ["QRDOCTOR", "127.0.0.1", store]}}
    with OrthancServer(aet="ORTHANC", config=config, dicomweb=True) as pacs:
        pacs.upload(make_corpus(30, series_per_study=2, instances_per_series=3, seed=5))
        yield (Target("127.0.0.1", pacs.dicom_port, "ORTHANC", store_port=store, advertise="127.0.0.1", timeout=5),
               {"dicomweb": pacs.dicomweb_url})


@contextmanager
def dcmqrscp_target() -> Iterator[tuple]:
    from qrdoctor.core.target import Target

    from support.corpus import make_corpus
    from support.dcmqrscp import DcmqrscpServer

    store = free_port()
    with DcmqrscpServer(aet="DCMQRSCP", peers={"QRDOCTOR": ("QRDOCTOR", "127.0.0.1", store)}) as pacs:
        pacs.store(make_corpus(30, series_per_study=2, instances_per_series=3, seed=5))
        yield Target("127.0.0.1", pacs.port, "DCMQRSCP", store_port=store, advertise="127.0.0.1", timeout=5), {}


TARGETS = {"demo": demo_target, "orthanc": orthanc_target, "dcmqrscp": dcmqrscp_target}


def generate(name: str, out: Path = OUT) -> dict[str, Path]:
    from qrdoctor.core.runner import Runner
    from qrdoctor.reports import write_report

    out.mkdir(parents=True, exist_ok=True)
    with TARGETS[name]() as (target, options):
        report = Runner(target, options={"listen_host": "127.0.0.1", **options}).run()
    return {fmt: write_report(report, fmt, out / f"{name}.{fmt}") for fmt in ("json", "md", "html")}


def main() -> None:
    ap = argparse.ArgumentParser(description="Regenerate sample_reports/")
    ap.add_argument("--only", choices=sorted(TARGETS), action="append")
    args = ap.parse_args()
    for name in args.only or list(TARGETS):
        paths = generate(name)
        print(f"{name}: " + ", ".join(str(p.relative_to(ROOT)) for p in paths.values()))


if __name__ == "__main__":
    main()
