"""Record replay fixtures: run the checks live and keep what each one observed.

    python scripts/record_observations.py orthanc dcmqrscp sim-demo fault-http
    python scripts/record_observations.py --list

Each source is a live peer started on loopback (real Orthanc and dcmqrscp through the test
harness in tests/support/, the simulated PACS with quirks, or an in-process fault-injection
peer). For every check that observed something, tests/observations/<source>/<check>.json gets
the observation, the target, the options, the earlier checks' results and the status, codes
and fact names the live run concluded (qrdoctor.core.replay.fixture_from_report).
tests/test_replay_fixtures.py replays them all with the network blocked. Observations are
redacted like a support bundle, so fixtures carry no patient data.

Re-record a source only when a conclusion changes on purpose, and read the diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "observations"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from support.ports import free_port  # noqa: E402

import sample_reports  # noqa: E402


@contextmanager
def simulator(quirks: str) -> Iterator:
    from qrdoctor.core.target import Target
    from qrdoctor.simulator import demo_pacs

    store = free_port()
    kwargs = {} if quirks == "demo" else {"quirks": quirks}
    with demo_pacs(store, **kwargs).start() as pacs:
        yield Target("127.0.0.1", pacs.port, pacs.ae_title, store_port=store, advertise="127.0.0.1", timeout=3)


@contextmanager
def fault(kind: str) -> Iterator:
    from support import faults

    from qrdoctor.core.target import Target

    if kind == "refused":
        yield Target("127.0.0.1", faults.closed_port(), "FAULTSCP", timeout=2)
        return
    peers: dict[str, Callable] = {
        "http": faults.http_server, "silent": faults.silent_listener, "closing": faults.closing_listener,
        "reject-calling": lambda: faults.dicom_scp(require_calling_aet=["SOMEONE"]),
        "reject-called": lambda: faults.dicom_scp(require_called_aet=True, ae_title="RIGHTAE"),
        "echo-only": faults.dicom_scp,
        "non-ascii-names": non_ascii_names_scp,
    }
    with peers[kind]() as port:
        yield Target("127.0.0.1", port, "FAULTSCP", timeout=2)


def non_ascii_names_scp():
    """A query SCP holding an ASCII and a Latin-1 patient that matches by Patient ID but never
    matches a name with non-ASCII letters (pn-non-ascii)."""
    from pydicom import Dataset
    from pynetdicom import evt
    from support import faults

    def study(name: str, pid: str, uid: str) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientName, ds.PatientID, ds.StudyInstanceUID = name, pid, uid
        ds.StudyDate, ds.StudyTime = "20200101", "101010"
        return ds

    studies = [study("SMITH^JOHN", "P1", "1.2.3.1"), study("MÜLLER^JÜRGEN", "P2", "1.2.3.2")]

    def find(event):
        q = event.identifier
        name = str(q.get("PatientName", "") or "")
        for ds in studies:
            if (q.get("PatientID") and q.PatientID != ds.PatientID) or (name and not name.isascii()):
                continue
            yield 0xFF00, ds

    return faults.dicom_scp(contexts=faults.QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, find)])


def source(name: str):
    if name in ("orthanc", "dcmqrscp"):
        return sample_reports.TARGETS[name]()
    if name.startswith("sim-"):
        return simulator(name[4:])
    if name.startswith("fault-"):
        return fault(name[6:])
    raise SystemExit(f"unknown source {name!r} (see --list)")


SOURCES_HELP = ("orthanc", "dcmqrscp", "sim-demo", "sim-<quirk,...> (qrdoctor demo --list-quirks)",
                "fault-refused", "fault-http", "fault-silent", "fault-closing", "fault-reject-calling",
                "fault-reject-called", "fault-echo-only", "fault-non-ascii-names")


def record(name: str, only: list[str] | None = None) -> list[Path]:
    from qrdoctor.core.registry import option_models, select
    from qrdoctor.core.replay import fixture_from_report
    from qrdoctor.core.runner import Runner
    from qrdoctor.reports import redact_report

    declared = {field for model in option_models(select(only)) for field in model.model_fields}
    options = {k: v for k, v in {"listen_host": "127.0.0.1"}.items() if k in declared}
    with source(name) as target:
        live = Runner(target, only=only, options=options).run()
    report = redact_report(live)
    folder = FIXTURES / name.replace(",", "+").replace("=", "-").lower()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for c in report.checks:
        if (only and c.id not in only) or report._observations.get(c.id) is None:
            continue
        path = folder / f"{c.id}.json"
        path.write_text(json.dumps(fixture_from_report(report, c.id), indent=1, sort_keys=True,
                                   ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


MATCH_CHECKS = ["match.wildcards", "match.ranges", "match.lists"]
MATCH_SOURCES = {  # where each matching finding is seen, and the checks recorded there
    "orthanc": MATCH_CHECKS,  # pn-exact-mismatch (info: trailing ^^)
    "dcmqrscp": MATCH_CHECKS,  # pn-case-sensitive, list-unsupported
    "sim-case-sensitive-pn": ["match.wildcards"],
    "sim-family-name-wildcards": ["match.wildcards"],  # pn-family-name-only
    "sim-no-question-mark": ["match.wildcards"],  # wildcard-unsupported
    "sim-no-open-ranges": ["match.ranges"],  # range-unsupported
    "fault-non-ascii-names": ["match.wildcards"],  # pn-non-ascii
}


def record_match() -> list[Path]:
    """The matching stage's fixtures: real servers, the simulator's matching quirks, a fault."""
    return [path for name, only in MATCH_SOURCES.items() for path in record(name, only)]


STAGES: dict[str, Callable[[], list[Path]]] = {"match": record_match}


def main() -> None:
    ap = argparse.ArgumentParser(description="Record replay fixtures into tests/observations/")
    ap.add_argument("sources", nargs="*", help=f"where to record (see --list), or a stage: {', '.join(STAGES)}")
    ap.add_argument("--only", default=None, help="comma-separated check ids (and what they require)")
    ap.add_argument("--list", action="store_true", help="list the sources")
    args = ap.parse_args()
    if args.list or not args.sources:
        print("\n".join(SOURCES_HELP))
        return
    only = [c for c in (args.only or "").split(",") if c] or None
    for name in args.sources:
        for path in STAGES[name]() if name in STAGES else record(name, only):
            print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
