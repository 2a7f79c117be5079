"""Issue 13, the real prior fetch: ``--patient-id`` does what a workstation does when a patient is
scanned (the patient's studies, the most recent one, one series of it or all of it, reconciled
and timed against ``--workstation-timeout``), and find.levels narrows an empty universal STUDY
query by date before concluding that the PACS shows no study.

Against the simulated PACS (patients with several studies), Orthanc and dcmqrscp loaded with one
patient's three studies, and an in-process fault PACS that answers a universal query with
nothing while it answers dated ones.
"""

from __future__ import annotations

import datetime as dt

from pydicom import Dataset
from pynetdicom import evt
from pynetdicom import sop_class as sc
from test_reports import all_outputs

from qrdoctor.checks.find.levels import DATE_WINDOWS, date_windows
from qrdoctor.core.model import Audience, Severity, Status
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.simulator import SimulatedPACS
from qrdoctor.simulator.data import Archive

from support.audience_rules import audience_problems
from support.corpus import make_instance, stable_uid
from support.faults import QR_CONTEXTS, dicom_scp
from support.ports import free_port
from support.run import codes, result, run

RETRIEVE = ["retrieve.move", "retrieve.get"]
ARCHIVE = Archive(studies=12, seed=1)  # the simulator's archive for SimulatedPACS(studies=12)


def patient_with(n: int):
    return next(p for p in ARCHIVE.patients if len(p.studies) == n)


def newest(patient):
    return max(patient.studies, key=lambda s: (s.date, s.time))


def simulate(quirks: str = "", only=RETRIEVE, command_line: str | None = None, **options):
    store_port = free_port()
    options.setdefault("listen_host", "127.0.0.1")
    with SimulatedPACS(ae_title="SIMPACS", studies=12, quirks=quirks, known_aes=["QRDOCTOR"],
                       destinations={"QRDOCTOR": ("127.0.0.1", store_port)}) as pacs:
        target = Target("127.0.0.1", pacs.port, "SIMPACS", store_port=store_port, timeout=2.0)
        return Runner(target, only=only, options=options, command_line=command_line).run()


def no_data_finding(report, check_id: str):
    (f,) = result(report, check_id).findings
    assert f.code == "retrieve-no-data"
    return f


# -- the simulator ----------------------------------------------------------------------------


def test_patient_id_fetches_one_series_of_the_most_recent_study_and_reconciles():
    patient = patient_with(3)
    prior = newest(patient)
    smallest = min(prior.series, key=lambda s: s.num_instances)
    pid = patient.patient_id
    report = simulate(patient_id=pid, issuer="ISSUER-OF-PRIORS",
                      command_line=f"qrdoctor check 127.0.0.1 --patient-id {pid} --issuer ISSUER-OF-PRIORS")
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.PASS, (check_id, r.summary, r.findings)
        f = r.facts
        assert f["subject"]["study_instance_uid"] == prior.uid
        assert f["subject"]["series_instance_uid"] == smallest.uid
        assert f["subject"]["chosen_by"] == "the smallest series of the most recent of the patient's 3 studies"
        assert f["received"] == f["completed"] == f["expected"] == smallest.num_instances
        assert f["prior_fetch"] == {"patient_studies": 3, "chosen": "most-recent", "retrieve": "series",
                                    "instance_availability": "ONLINE"}
        assert f["workstation_timeout_s"] == 30.0
        assert f["time_to_first_object_ms"] is not None and f["duration_ms"] > 0
    # the Patient ID and issuer are redacted everywhere, the prior fetch's facts are not
    for name, text in all_outputs(report).items():
        assert pid not in text and "ISSUER-OF-PRIORS" not in text, name
    assert '"patient_studies": 3' in all_outputs(report)["json"]
    shown = all_outputs(report, include_phi=True)
    assert pid in shown["json"] and pid in shown["md"]


def test_retrieve_study_fetches_the_whole_prior():
    patient = patient_with(3)
    prior = newest(patient)
    report = simulate(patient_id=patient.patient_id, retrieve="study")
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.PASS, (check_id, r.summary, r.findings)
        f = r.facts
        assert f["subject"]["level"] == "STUDY" and f["subject"]["study_instance_uid"] == prior.uid
        assert f["received"] == f["expected"] == prior.num_instances > 2
        assert f["prior_fetch"]["retrieve"] == "study"


def test_study_with_patient_id_one_of_theirs_another_patients_and_an_unknown_patient():
    patient, other = patient_with(3), patient_with(2)
    older = min(patient.studies, key=lambda s: (s.date, s.time))
    report = simulate(only=["retrieve.move"], patient_id=patient.patient_id, study=older.uid)
    r = result(report, "retrieve.move")
    assert r.status is Status.PASS, (r.summary, r.findings)
    assert r.facts["subject"]["study_instance_uid"] == older.uid
    assert r.facts["subject"]["chosen_by"] == \
        "the smallest series of the study named with --study, one of the patient's 3 studies"
    assert r.facts["prior_fetch"] == {"patient_studies": 3, "chosen": "named", "retrieve": "series",
                                      "instance_availability": "ONLINE"}
    # a study of another patient is not fetched
    report = simulate(patient_id=patient.patient_id, study=other.studies[0].uid)
    for check_id in RETRIEVE:
        f = no_data_finding(report, check_id)
        assert f.evidence == {"study_instance_uid": other.studies[0].uid, "studies_of_patient": 3}
        assert "is not among the 3 studies" in f.summary
        assert audience_problems(f) == []
        assert "prior_fetch" not in result(report, check_id).facts
    # nor anything for a patient the PACS does not know
    report = simulate(patient_id="NO-SUCH-PATIENT", issuer="HOSP")
    for check_id in RETRIEVE:
        f = no_data_finding(report, check_id)
        assert "by the Patient ID given found no study" in f.summary
        assert f.evidence == {"issuer_given": True}
        assert [a.audience for a in f.actions] == [Audience.TESTER]


def test_a_pacs_slower_than_the_workstation_waits_gets_a_warning_with_numbers():
    patient = patient_with(3)
    report = simulate("slow=0.2", patient_id=patient.patient_id, workstation_timeout=0.05)
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.WARN, (check_id, r.summary, r.findings)
        (f,) = [f for f in r.findings if f.code == "retrieve-slow"]
        assert f.severity is Severity.WARN
        assert f.evidence["workstation_timeout_s"] == 0.05
        assert f.evidence["duration_ms"] >= 200  # the slow quirk holds the final response 0.2 s
        assert f.evidence["instance_availability"] == "ONLINE"
        assert "than a workstation waits (0.05 s)" in f.summary
        assert [a.audience for a in f.actions] == [Audience.PACS, Audience.WORKSTATION, Audience.USERS,
                                                  Audience.TESTER]
        assert "Instance Availability (0008,0056) as ONLINE" in f.fix
        assert audience_problems(f) == []
        assert r.facts["workstation_timeout_s"] == 0.05


# -- real servers -----------------------------------------------------------------------------

PATIENT = "PRIOR-0042"
STUDY_DATES = {"old": "20180312", "newest": "20230705", "middle": "20210101"}


def prior_corpus() -> list[Dataset]:
    """One patient with three studies (2 series each: 1 and 2 instances), another with one."""
    out = []
    for key, date in STUDY_DATES.items():
        for series, count in ((1, 2), (2, 1)):
            for n in range(count):
                out.append(make_instance(
                    patient_name="PRIOR^PATIENT", patient_id=PATIENT, study_date=date,
                    study_instance_uid=stable_uid("prior", key), accession_number=f"ACC-{key}",
                    series_instance_uid=stable_uid("prior", key, series), series_number=series,
                    sop_instance_uid=stable_uid("prior", key, series, n), instance_number=n + 1,
                    modality="CT"))
    out.append(make_instance(patient_name="OTHER^PATIENT", patient_id="OTHER-7", study_date="20240101",
                             study_instance_uid=stable_uid("prior", "other"),
                             series_instance_uid=stable_uid("prior", "other", 1),
                             sop_instance_uid=stable_uid("prior", "other", 1, 0)))
    return out


def peer_run(server, **options):
    t = Target("127.0.0.1", server.dicom_port, server.aet, store_port=server.store_port, timeout=3.0)
    return Runner(t, only=RETRIEVE, options={"listen_host": "127.0.0.1"} | options).run()


def assert_prior_fetched(server, smallest_known: bool) -> None:
    newest_uid = stable_uid("prior", "newest")
    report = peer_run(server, patient_id=PATIENT)
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.PASS, (check_id, r.summary, r.findings)
        f = r.facts
        assert f["subject"]["study_instance_uid"] == newest_uid
        # the smaller series where the PACS gives series sizes (Orthanc); dcmqrscp does not
        sizes = {stable_uid("prior", "newest", 1): 2, stable_uid("prior", "newest", 2): 1}
        if smallest_known:
            assert f["subject"]["series_instance_uid"] == stable_uid("prior", "newest", 2)
        assert f["received"] == f["completed"] == f["expected"] == sizes[f["subject"]["series_instance_uid"]]
        assert f["prior_fetch"]["patient_studies"] == 3 and f["prior_fetch"]["chosen"] == "most-recent"
    report = peer_run(server, patient_id=PATIENT, retrieve="study")
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.PASS, (check_id, r.summary, r.findings)
        assert r.facts["subject"]["study_instance_uid"] == newest_uid
        assert r.facts["received"] == r.facts["expected"] == 3
    report = peer_run(server, patient_id=PATIENT, study=stable_uid("prior", "other"))
    assert codes(report) == {"retrieve-no-data"}
    assert all(f.evidence.get("studies_of_patient") == 3 for c in report.checks for f in c.findings)


def test_orthanc_prior_fetch(orthanc_factory):
    assert_prior_fetched(orthanc_factory(datasets=prior_corpus()), smallest_known=True)


def test_dcmqrscp_prior_fetch(dcmqrscp_factory):
    assert_prior_fetched(dcmqrscp_factory(datasets=prior_corpus()), smallest_known=False)


# -- find.levels: narrowing an empty universal STUDY query by date ------------------------------


def dated_only(study_date: str):
    """A C-FIND SCP holding one study dated ``study_date``: a STUDY query without a Study Date
    value gets Success and nothing; a date range finds the study when it covers the date."""
    study, series = "1.2.826.0.1.3680043.10.9042.13.1", "1.2.826.0.1.3680043.10.9042.13.1.1"
    record = {"PatientID": "P13", "PatientName": "DOE^JANE", "StudyDate": study_date, "StudyInstanceUID": study,
              "SeriesInstanceUID": series, "Modality": "CT", "SOPInstanceUID": f"{series}.1",
              "SOPClassUID": sc.CTImageStorage}

    def on_find(event):
        q = event.identifier
        if q.QueryRetrieveLevel == "PATIENT" and not q.get("PatientID"):
            yield 0x0000, None  # nothing for a universal PATIENT query either
            return
        if q.QueryRetrieveLevel == "STUDY":
            wanted = str(q.get("StudyDate", "") or "")
            if not wanted:
                yield 0x0000, None
                return
            lo, _, hi = wanted.partition("-")
            if not (lo <= study_date <= (hi or "99991231")):
                yield 0x0000, None
                return
        ds = Dataset()
        for elem in q:
            setattr(ds, elem.keyword, record.get(elem.keyword, elem.value) if elem.keyword != "StudyDate"
                    else study_date)
        ds.QueryRetrieveLevel = q.QueryRetrieveLevel
        yield 0xFF00, ds
        yield 0x0000, None

    return dicom_scp(contexts=QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, on_find)])


def test_date_windows_go_from_the_last_week_back_by_decade():
    windows = date_windows(dt.date(2024, 2, 29))
    assert len(windows) == DATE_WINDOWS
    assert windows[:4] == [("the last 7 days", "20240222-20240301"), ("the last 30 days", "20240130-20240301"),
                           ("the last year", "20230228-20240301"), ("2013-02-28 to 2023-02-27", "20130228-20230227")]
    # contiguous, older and older, every range closed
    for (_, newer), (_, older) in zip(windows[3:], windows[4:], strict=False):
        assert dt.datetime.strptime(older[9:], "%Y%m%d") + dt.timedelta(days=1) == \
            dt.datetime.strptime(newer[:8], "%Y%m%d")
    assert windows[-1][1][:4] < "1900"


def test_an_empty_universal_query_is_narrowed_by_date_and_the_walk_goes_on():
    twenty_days_ago = f"{dt.date.today() - dt.timedelta(days=20):%Y%m%d}"
    with dated_only(twenty_days_ago) as port:
        report = run(port, only=["find.levels"])
    r = result(report, "find.levels")
    assert codes(report, "find.levels") == {"universal-query-empty"}
    (f,) = r.findings
    assert f.severity is Severity.WARN
    assert f.evidence["date_window"] == "the last 30 days" and f.evidence["windows_tried"] == 2
    assert "answered a universal STUDY query (Study Root) from QRDOCTOR with Success and no match" in f.summary
    assert "found 1 study:" in f.summary
    assert audience_problems(f) == []
    study, series, image = r.facts["levels"][:3]
    assert study["universal_query_empty"] is True and study["matching_keys"] == ["StudyDate"]
    assert study["matches"] == 1
    # the walk went on with the study the window found
    assert series["matching_keys"] == ["StudyInstanceUID"] and series["matches"] == 1
    assert image["matches"] == 1


def test_nothing_in_any_window_says_a_patient_id_lets_the_run_go_on():
    with dated_only("18500101") as port:
        report = run(port, only=["find.levels"])
    (f,) = result(report, "find.levels").findings
    assert f.code == "no-studies"
    assert f"limited to {DATE_WINDOWS} study date ranges" in f.summary
    (tester,) = [a for a in f.actions if a.audience is Audience.TESTER]
    assert "--patient-id" in tester.text
    assert audience_problems(f) == []
    study_root = next(row for row in f.evidence["levels"] if row["model"] == "study_root")
    assert study_root["date_windows_tried"] == DATE_WINDOWS


def test_the_patient_id_is_redacted_even_when_no_check_reached_the_retrieve():
    # Given a run that fails at TCP (nothing listens), started with --patient-id on its command line
    port = free_port()
    runner = Runner(Target("127.0.0.1", port, "NOBODY", timeout=1.0), only=["network.tcp", "retrieve.move"],
                    options={"patient_id": "PAT-7781", "issuer": "NORTH-HOSP"},
                    command_line=f"qrdoctor check NOBODY@127.0.0.1:{port} --patient-id PAT-7781 --issuer NORTH-HOSP")
    report = runner.run()
    # Then no output carries the Patient ID or its issuer, the command line included
    for name, text in all_outputs(report).items():
        assert "PAT-7781" not in text and "NORTH-HOSP" not in text, name
