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

import sample_reports  # noqa: E402

from support.ports import free_port  # noqa: E402

STRANGER_QUIRKS = ("query-refused-unknown", "query-abort-unknown")  # they concern an AE the PACS does not know


@contextmanager
def simulator(quirks: str) -> Iterator:
    from qrdoctor.core.target import Target
    from qrdoctor.simulator import demo_pacs

    store = free_port()
    kwargs = {} if quirks == "demo" else {"quirks": quirks}
    if any(q in quirks for q in STRANGER_QUIRKS):
        kwargs["calling_ae"] = "WORKSTATION"  # the PACS knows another node, not QRDOCTOR
    with demo_pacs(store, **kwargs).start() as pacs:
        yield Target("127.0.0.1", pacs.port, pacs.ae_title, store_port=store, advertise="127.0.0.1", timeout=3)


@contextmanager
def fault(kind: str) -> Iterator:
    from qrdoctor.core.target import Target

    from support import faults

    if kind == "refused":
        yield Target("127.0.0.1", faults.closed_port(), "FAULTSCP", timeout=2)
        return
    peers: dict[str, Callable] = {
        "http": faults.http_server, "silent": faults.silent_listener, "closing": faults.closing_listener,
        "reject-calling": lambda: faults.dicom_scp(require_calling_aet=["SOMEONE"]),
        "reject-called": lambda: faults.dicom_scp(require_called_aet=True, ae_title="RIGHTAE"),
        "echo-only": faults.dicom_scp,
        "non-ascii-names": non_ascii_names_scp,
        "no-studies": no_studies_scp,
        "level-failed": level_failed_scp,
        "nonconformant-answers": nonconformant_answers_scp,
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


def no_studies_scp():
    """A query SCP that answers every C-FIND with Success and no match (no-studies)."""
    from pynetdicom import evt

    from support import faults

    def nothing(event):
        yield from ()

    return faults.dicom_scp(contexts=faults.QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, nothing)])


def level_failed_scp():
    """A query SCP that answers every level in Study Root but a Patient Root SERIES query with
    0xA900 (find-level-failed, in one model only)."""
    from pydicom import Dataset
    from pynetdicom import evt
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

    from support import faults

    def find(event):
        q = event.identifier
        if q.QueryRetrieveLevel == "SERIES" and event.request.AffectedSOPClassUID == PatientRootQueryRetrieveInformationModelFind:
            yield 0xA900, None
            return
        ds = Dataset()
        ds.QueryRetrieveLevel = q.QueryRetrieveLevel
        ds.PatientName, ds.PatientID = "DOE^JANE", "P1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4", "1.2.3.4.5"
        ds.StudyDate, ds.Modality = "20200101", "CT"
        yield 0xFF00, ds

    return faults.dicom_scp(contexts=faults.QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, find)])


def nonconformant_answers_scp():
    """A query SCP whose STUDY answers repeat a study, name another level, lack the unique key
    or hold a lower level's key, and carry Latin-1 names without Specific Character Set
    (find-duplicate-rows, find-level-nonconformant, find-charset-missing)."""
    from pydicom import Dataset
    from pynetdicom import evt

    from support import faults

    def study(uid: str | None, level: str = "STUDY", **more: object) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        ds.PatientName, ds.PatientID, ds.StudyDate = b"M\xdcLLER^J\xdcRGEN", "P1", "20200101"
        if uid:
            ds.StudyInstanceUID = uid
        for keyword, value in more.items():
            setattr(ds, keyword, value)
        return ds

    rows = [study("1.2.3.1"), study("1.2.3.1"), study("1.2.3.2", "IMAGE", SOPInstanceUID="1.2.3.2.1.1"), study(None)]

    def find(event):
        if event.identifier.QueryRetrieveLevel == "STUDY":
            yield from ((0xFF00, ds) for ds in rows)

    return faults.dicom_scp(contexts=faults.QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, find)])


def source(name: str):
    if name in PEERS:
        return PEERS[name]()
    if name in ("orthanc", "dcmqrscp"):
        return sample_reports.TARGETS[name]()
    if name.startswith("sim-"):
        return simulator(name[4:])
    if name.startswith("fault-"):
        return fault(name[6:])
    raise SystemExit(f"unknown source {name!r} (see --list)")


PEERS_HELP = ("orthanc-no-entry", "orthanc-wrong-port", "dcmqrscp-unknown-destination", "dcmqrscp-wrong-port",
              "sim-store-port-busy", "sim-unknown-series")
SOURCES_HELP = ("orthanc", "dcmqrscp", "sim-demo", "sim-<quirk,...> (qrdoctor demo --list-quirks)",
                "fault-refused", "fault-http", "fault-silent", "fault-closing", "fault-reject-calling",
                "fault-reject-called", "fault-echo-only", "fault-non-ascii-names", "fault-no-studies",
                "fault-level-failed", "fault-nonconformant-answers", *PEERS_HELP)


def record(name: str, only: list[str] | None = None, options: dict | None = None) -> list[Path]:
    from qrdoctor.core.registry import option_models, select
    from qrdoctor.core.replay import fixture_from_report
    from qrdoctor.core.runner import Runner
    from qrdoctor.reports import redact_report

    declared = {field for model in option_models(select(only)) for field in model.model_fields}
    options = {k: v for k, v in ({"listen_host": "127.0.0.1"} | (options or {})).items() if k in declared}
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
    "sim-per-component-pn": ["match.wildcards"],  # pn-per-component
    "sim-no-question-mark": ["match.wildcards"],  # wildcard-unsupported
    "sim-no-open-ranges": ["match.ranges"],  # range-unsupported
    "fault-non-ascii-names": ["match.wildcards"],  # pn-non-ascii
}


def record_match() -> list[Path]:
    """The matching stage's fixtures: real servers, the simulator's matching quirks, a fault."""
    return [path for name, only in MATCH_SOURCES.items() for path in record(name, only)]


FIND_CHECKS = ["find.levels", "find.conformance", "find.return_keys", "find.match_limit"]
FIND_SOURCES = {  # where each query-stage finding is seen, and the checks recorded there
    "orthanc": FIND_CHECKS,  # no finding; the image level tested
    "dcmqrscp": FIND_CHECKS,  # return-key-empty (info: optional keys not returned)
    "sim-silent-cap=137": ["find.match_limit"],  # match-limit: silent, proven by two date ranges
    "sim-cap-cancel=137": ["find.match_limit"],  # match-limit: signalled with 0xFE00
    "sim-cap-refuse=50": ["find.match_limit"],  # match-limit: broad queries refused, bisected
    "sim-empty-keys=StudyDescription+AccessionNumber": ["find.return_keys"],  # return-key-empty (warn)
    "sim-query-refused-unknown": ["find.levels"],  # query-refused: 0x0124
    "sim-query-abort-unknown": ["find.levels"],  # query-refused: A-ABORT
    "fault-no-studies": ["find.levels"],  # no-studies
    "fault-level-failed": ["find.levels"],  # find-level-failed (Patient Root only)
    "sim-study-row-per-image": ["find.conformance"],  # find-duplicate-rows
    "sim-charset-missing": ["find.conformance"],  # find-charset-missing: names, no (0008,0005)
    "fault-nonconformant-answers": ["find.conformance"],  # all three conformance findings
}


def record_find() -> list[Path]:
    """The query stage's fixtures: real servers, the simulator's caps and key quirks, faults."""
    return [path for name, only in FIND_SOURCES.items() for path in record(name, only)]


RETRIEVE_CHECKS = ["retrieve.move", "retrieve.get"]
RETRIEVE_SOURCES: dict[str, tuple[list[str], dict]] = {  # where each retrieve finding is seen
    "orthanc": (RETRIEVE_CHECKS, {}),  # round trips
    "dcmqrscp": (RETRIEVE_CHECKS, {}),  # round trips; C-GET roles from the modality
    "orthanc-no-entry": (["retrieve.move"], {}),  # 0xC000 like the unknown AE: hedged destination-unknown
    "orthanc-wrong-port": (["retrieve.move"], {}),  # the same bytes as no entry: hedged
    "dcmqrscp-unknown-destination": (["retrieve.move"], {}),  # 0xA801: move-destination-unknown
    "dcmqrscp-wrong-port": (["retrieve.move"], {}),  # 0xA702, failed = N: move-no-inbound
    "sim-move-destination-unknown": (["retrieve.move"], {}),
    "sim-wrong-port": (["retrieve.move"], {}),  # move-no-inbound
    "sim-success-zero": (RETRIEVE_CHECKS, {}),  # move-silent-failure, get-silent-failure
    "sim-success-all-failed": (RETRIEVE_CHECKS, {}),  # no-inbound + silent failure; get-silent-failure
    "sim-pending-forever": (RETRIEVE_CHECKS, {}),  # retrieve-stalled (the watchdog's C-CANCEL)
    "sim-no-get": (["retrieve.get"], {}),  # get-unsupported (not applicable)
    "sim-store-port-busy": (["retrieve.move"], {}),  # store-port-unavailable
    "sim-unknown-series": (RETRIEVE_CHECKS, {"series": "1.2.826.0.1.3680043.10.9042.999.1"}),  # retrieve-no-data
}


def record_retrieve() -> list[Path]:
    """The retrieve stage's fixtures: real servers (healthy and with a missing or wrong
    destination entry) and the simulator's retrieve quirks."""
    return [path for name, (only, options) in RETRIEVE_SOURCES.items() for path in record(name, only, options)]


@contextmanager
def orthanc_destination(registered: bool) -> Iterator:
    """An Orthanc that lets anyone retrieve, with QRDOCTOR's destination entry missing, or
    registered on a port where nothing listens."""
    from qrdoctor.core.target import Target

    from support.corpus import make_corpus
    from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer

    ours, wrong = free_port(), free_port()
    entries = {"qrdoctor": ["QRDOCTOR", "127.0.0.1", wrong]} if registered else {}
    with OrthancServer(aet="ORTHANC", config={**ORTHANC_ALLOW_ALL, "DicomModalities": entries}) as pacs:
        pacs.upload(make_corpus(4, series_per_study=2, instances_per_series=2, seed=5))
        yield Target("127.0.0.1", pacs.dicom_port, "ORTHANC", store_port=ours, advertise="127.0.0.1", timeout=3)


@contextmanager
def dcmqrscp_destination(known: bool) -> Iterator:
    """dcmqrscp with QRDOCTOR in its HostTable on a port where nothing listens, or a move
    destination it does not know."""
    from qrdoctor.core.target import Target

    from support.corpus import make_corpus
    from support.dcmqrscp import DcmqrscpServer

    ours, wrong = free_port(), free_port()
    with DcmqrscpServer(aet="DCMQRSCP", peers={"QRDOCTOR": ("QRDOCTOR", "127.0.0.1", wrong)}) as pacs:
        pacs.store(make_corpus(4, series_per_study=2, instances_per_series=2, seed=5))
        yield Target("127.0.0.1", pacs.port, "DCMQRSCP", store_port=ours, advertise="127.0.0.1", timeout=3,
                     move_ae=None if known else "QRDUNKNOWN")


@contextmanager
def store_port_busy() -> Iterator:
    """The simulator, with the port of our Store SCP already taken by another program."""
    import socket

    with socket.socket() as holder, simulator("") as target:
        holder.bind(("127.0.0.1", target.store_port))
        holder.listen(1)
        yield target


PEERS: dict[str, Callable] = {
    "orthanc-no-entry": lambda: orthanc_destination(registered=False),
    "orthanc-wrong-port": lambda: orthanc_destination(registered=True),
    "dcmqrscp-unknown-destination": lambda: dcmqrscp_destination(known=False),
    "dcmqrscp-wrong-port": lambda: dcmqrscp_destination(known=True),
    "sim-store-port-busy": store_port_busy,
    "sim-unknown-series": lambda: simulator(""),
}


STAGES: dict[str, Callable[[], list[Path]]] = {"find": record_find, "match": record_match,
                                               "retrieve": record_retrieve}


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
