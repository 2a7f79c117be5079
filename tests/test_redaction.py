"""Redaction: no patient name, ID, birth date or accession number leaves qrdoctor by default.

The values are planted everywhere a check could put them — summaries, fixes, explanations,
evidence and facts at any depth, dictionary keys, protocol transcripts in DCMTK's, pydicom's and
DICOM JSON's notation, in other letter cases, as name components and as wildcard probes — and
then looked for in every format and every file of the bundle.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile

import pytest
from test_reports import all_outputs, build_report, sample_checks

from qrdoctor.core.model import CheckResult, Finding, Report, Severity, Status
from qrdoctor.reports import FORMATS, redact_report, render
from qrdoctor.reports.redact import TOKEN_RE, Redactor, canonical_kind

from support.faults import QR_CONTEXTS, dicom_scp
from support.run import run

PHI = {
    "Müller^Jürgen": "name",
    "SMITH^JOHN^A": "name",
    "O'Connor^Siobhan": "name",
    "PID-0042-X": "id",
    "778899": "id",
    "19610415": "birth_date",
    "ACC20240001": "accession",
}
# Every string that must never appear (compared case-insensitively): values and PN components.
FORBIDDEN = [
    "Müller^Jürgen", "Müller", "Jürgen", "SMITH^JOHN^A", "SMITH", "JOHN", "O'Connor", "Siobhan",
    "PID-0042-X", "778899", "19610415", "1961-04-15", "ACC20240001",
    # derived probe patterns
    "SMI*", "MÜL*", "M?LLER", "Jür*", "*CONNOR",
    # spelled without accents, URL-encoded
    "Muller", "Jurgen", "Mueller", "Juergen", "M%C3%BCller",
    # values the checks did not register, found because the text labels them
    "DOE^JANE", "JANE", "UNREG-9", "19990101", "ACC-UNREG-1", "Nakamura", "ROE^RICHARD",
]


def planted_report() -> Report:
    checks = sample_checks()
    checks.append(CheckResult(
        id="match.wildcards", stage="matching", title="PN wildcard semantics", status=Status.FAIL,
        duration_s=0.9,
        summary="SMITH* finds SMITH^JOHN^A but smith* does not; Müller^Jürgen found as MÜLLER^JÜRGEN",
        reason=None,
        facts={
            "case_sensitive": True, "scope": "family_name",
            "probes": [
                {"pattern": "SMI*", "matches": 1}, {"pattern": "smi*", "matches": 0},
                {"pattern": "MÜL*", "matches": 1}, {"pattern": "M?LLER", "matches": 1},
                {"pattern": "*CONNOR", "matches": 0}, {"pattern": "Jür*", "matches": 1},
            ],
            "learned": {"patients": [{"PatientName": "Müller^Jürgen", "PatientID": "PID-0042-X",
                                      "PatientBirthDate": "19610415", "AccessionNumber": "ACC20240001"}]},
            "by_name": {"SMITH^JOHN^A": {"studies": 2}, "o'connor^siobhan": {"studies": 1}},
            "deep": [[{"x": ["level 3", {"y": "patient 778899 born 1961-04-15"}]}]],
            # defence in depth: values under patient keys the check forgot to register
            "unregistered": {"PatientName": "DOE^JANE", "PatientID": "UNREG-9",
                             "(0010,0030)": "19990101", "AccessionNumber": ["ACC-UNREG-1"],
                             "PatientName_count": 3},
            "empty_keys": {"PatientName": 12, "PatientBirthDate": "empty"},
        },
        findings=[
            Finding(
                code="pn-case-sensitive", severity=Severity.FAIL,
                summary="A search for smith* missed SMITH^JOHN^A (Smith, John) and siobhan o'connor.",
                explanation="Searching for Müller finds MÜLLER^JÜRGEN only when typed in capitals.",
                fix="Tell users to search JOHN SMITH as SMITH^JOHN* or ask about patient 778899 (PID-0042-X).",
                evidence={
                    "query": {"PatientName": "smi*", "PatientID": "", "PatientBirthDate": "19610415"},
                    "matched": ["SMITH^JOHN^A", "Muller^Jurgen", "Müller^Jürgen"],
                    "accession": "ACC20240001",
                    "qido_url": "http://pacs/dicom-web/studies?PatientName=M%C3%BCller%5EJ%C3%BCrgen&limit=5",
                    "qido_unlabelled": "http://pacs/dicom-web/studies?00100010=M%C3%BCller%5EJ%C3%BCrgen",
                },
            ),
            Finding(
                code="pn-family-name-only", severity=Severity.WARN,
                summary="SMI* matched the family name only (SMITH), not the given name JOHN.",
                explanation="Some archives index the family name component only.",
                fix="Search by family name.", evidence={"pattern": "JOH*", "matches": 0},
            ),
        ],
        transcript=[
            # DCMTK / pynetdicom notation
            "   0.100s D (0010,0010) PN [MÜLLER^JÜRGEN]                         # 1 PatientName",
            "   0.100s D (0010,0020) LO [PID-0042-X]                            # 1 PatientID",
            "   0.100s D (0010,0030) DA [19610415]                              # 1 PatientBirthDate",
            "   0.100s D (0008,0050) SH [ACC20240001]                           # 1 AccessionNumber",
            "   0.100s D (0010,0010) PN [DOE^JANE]                              # 1 PatientName",
            # pydicom notation, with a value no check registered
            "   0.101s D (0010,0010) Patient's Name                      PN: 'ROE^RICHARD'",
            "   0.101s D (0010,1000) Other Patient IDs                   LO: ['UNREG-9', '778899']",
            # keyword notation and DICOM JSON (QIDO-RS)
            "   0.102s D C-FIND PatientName=smith^john^a PatientID=PID-0042-X",
            '   0.103s D {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Nakamura^Hana"}]}, '
            '"00100020": {"vr": "LO", "Value": ["UNREG-9"]}}',
            # the same values bare, in other cases
            "   0.104s D response 1: müller^jürgen, 778899, 1961-04-15, acc20240001, Jürgen Müller",
            "   0.105s D later: DOE^JANE again, and Nakamura",
            "   0.106s D transliterated: MUELLER^JUERGEN",
        ],
    ))
    report = build_report(checks)
    report._phi.update(PHI)
    # what the checks observed goes into the bundle's observations.json: patient data there too
    report._observations["match.wildcards"] = {
        "subject": {"PatientName": "Müller^Jürgen", "PatientID": "PID-0042-X"},
        "probes": [{"pattern": "SMI*", "matches": 1}, {"pattern": "Jür*", "matches": 1}],
        "rows": [{"PatientBirthDate": "19610415", "AccessionNumber": "ACC20240001",
                  "note": "SMITH^JOHN^A and O'Connor^Siobhan, patient 778899"}],
    }
    return report


def assert_clean(name: str, text: str) -> None:
    folded = text.casefold()
    for value in FORBIDDEN:
        assert value.casefold() not in folded, f"{value!r} survived in {name}"


# -- every format, every file --------------------------------------------------------------------

def test_no_patient_value_survives_in_any_format_or_bundle_file():
    report = planted_report()
    outputs = all_outputs(report)
    assert set(outputs) == {"json", "md", "html", "bundle/README.txt", "bundle/report.html",
                            "bundle/report.json", "bundle/report.md", "bundle/transcript.txt",
                            "bundle/environment.json", "bundle/observations.json"}
    for name, text in outputs.items():
        assert_clean(name, text)
    # the redacted report still reads: tokens where the values were, everything else intact
    summary = json.loads(outputs["json"])["checks"][-1]["summary"]
    assert re.fullmatch(
        r"«name:[0-9a-f]{6}»\* finds «name:[0-9a-f]{6}» but «name:[0-9a-f]{6}»\* does not; "
        r"«name:[0-9a-f]{6}» found as «name:[0-9a-f]{6}»", summary), summary


def test_include_phi_keeps_the_values_and_says_so():
    report = planted_report()
    outputs = all_outputs(report, include_phi=True)
    for name in ("json", "md", "html", "bundle/report.md", "bundle/transcript.txt"):
        assert "müller^jürgen" in outputs[name].casefold(), name
        assert "PID-0042-X" in outputs[name], name
    assert "This report contains patient data." in outputs["md"].split("\n## ", 1)[0]
    assert "This report contains patient data." in outputs["html"].split("<main>", 1)[0]
    assert "THIS BUNDLE CONTAINS PATIENT DATA" in outputs["bundle/README.txt"]
    assert json.loads(outputs["json"])["phi_included"] is True
    # and the default does not say so
    plain = all_outputs(report)
    assert "contains patient data" not in plain["md"] and "contains patient data" not in plain["html"]
    assert json.loads(plain["json"])["phi_included"] is False


def test_redacted_json_round_trips_and_html_embeds_it():
    report = planted_report()
    html = render(report, "html")
    blob = html.split('id="qrdoctor-report">', 1)[1].split("</script>", 1)[0]
    assert json.loads(blob) == json.loads(render(report, "json"))
    assert_clean("embedded json", json.dumps(json.loads(blob), ensure_ascii=False))


# -- the tokens --------------------------------------------------------------------------------------

def test_tokens_are_stable_within_a_report_and_differ_between_reports():
    report = planted_report()
    first = redact_report(report)
    second = redact_report(report)
    assert first.to_json() == second.to_json()  # same report: same tokens in every file
    transcript = first.checks[-1].transcript
    token = re.search(r"\[(«name:[0-9a-f]{6}»)\]", transcript[0]).group(1)
    assert token in first.checks[-1].summary  # MÜLLER^JÜRGEN in the transcript = Müller^Jürgen
    assert token in next(line for line in transcript if "response 1" in line)  # and müller^jürgen
    other = planted_report()  # the same patient in another report (another run)
    other_token = re.search(r"\[(«name:[0-9a-f]{6}»)\]", redact_report(other).checks[-1].transcript[0]).group(1)
    assert other_token != token


def test_other_spellings_of_a_value_get_its_token():
    red = redact_report(planted_report()).checks[-1]
    whole = re.search(r"\[(«name:[0-9a-f]{6}»)\]", red.transcript[0]).group(1)
    evidence = red.findings[0].evidence
    assert evidence["matched"][1:] == [whole, whole]  # Muller^Jurgen, Müller^Jürgen
    assert evidence["qido_url"] == f"http://pacs/dicom-web/studies?PatientName={whole}&limit=5"
    assert evidence["qido_unlabelled"].endswith(f"?00100010={whole}")
    assert red.transcript[-1].endswith(f"transliterated: {whole}")
    assert re.search(r"born «birth_date:[0-9a-f]{6}»", red.facts["deep"][0][0]["x"][1]["y"])
    assert red.facts["learned"]["patients"][0]["PatientBirthDate"] in red.facts["deep"][0][0]["x"][1]["y"]


def test_tokens_are_salted_not_plain_hashes():
    import hashlib

    red = Redactor({"SMITH^JOHN": "name"}, salt=b"x" * 16)
    tok = red.token("name", "SMITH^JOHN")
    assert TOKEN_RE.fullmatch(tok)
    for guess in ("SMITH^JOHN", "smith^john", "name\x00smith^john"):
        for algo in (hashlib.md5, hashlib.sha1, hashlib.sha256):
            assert algo(guess.encode()).hexdigest()[:6] not in tok
    assert Redactor({"SMITH^JOHN": "name"}, salt=b"y" * 16).token("name", "SMITH^JOHN") != tok


def test_redaction_is_a_copy_and_idempotent():
    report = planted_report()
    before = report.model_dump()
    red = redact_report(report)
    assert report.model_dump() == before  # the original is untouched
    assert red is not report and red.phi_values == {} and red.phi_included is False
    assert redact_report(red).to_json() == red.to_json()
    opted = redact_report(report, include_phi=True)
    assert opted.phi_included is True and opted.phi_values == report.phi_values
    assert report.phi_included is False


# -- what stays --------------------------------------------------------------------------------------

def test_a_real_run_without_patient_data_is_unchanged():
    # Given a real run against a pynetdicom SCP (association transcripts, AE titles, statuses)
    with dicom_scp(contexts=QR_CONTEXTS) as port:
        report = run(port)
    assert sum(len(c.transcript) for c in report.checks) > 20
    # When it is redacted, then nothing in it is patient data, so nothing changes
    assert json.loads(redact_report(report).to_json()) == json.loads(report.to_json())


def test_ae_titles_addresses_ports_codes_counts_and_timings_stay():
    report = planted_report()
    red = redact_report(report)
    assert red.target == report.target
    assert [c.id for c in red.checks] == [c.id for c in report.checks]
    assert [c.status for c in red.checks] == [c.status for c in report.checks]
    move = next(c for c in red.checks if c.id == "retrieve.move")
    assert move.facts == next(c for c in report.checks if c.id == "retrieve.move").facts
    assert "10.1.2.3 port 11113" in move.findings[0].fix and "0xA801" in move.findings[0].summary
    wild = red.checks[-1]
    assert wild.facts["case_sensitive"] is True and wild.facts["scope"] == "family_name"
    assert [p["matches"] for p in wild.facts["probes"]] == [1, 0, 1, 1, 0, 1]
    assert wild.facts["empty_keys"] == {"PatientName": 12, "PatientBirthDate": "empty"}
    assert wild.facts["unregistered"]["PatientName_count"] == 3
    assert wild.duration_s == 0.9 and wild.facts["deep"][0][0]["x"][0] == "level 3"
    assert wild.findings[0].evidence["query"]["PatientID"] == ""


def test_short_ids_do_not_eat_ports_and_numbers_but_never_leak_as_words():
    checks = [CheckResult(
        id="find.levels", stage="query", title="C-FIND", status=Status.WARN,
        summary="port 4242: 42 matches for patient 42 (1.42 s, UID 1.2.42.7)",
        facts={"PatientID": "42", "values": ["42", "x42"], "count": 42},
        findings=[Finding(code="x", severity=Severity.WARN, summary="s", explanation="e", fix="f")],
    )]
    report = build_report(checks)
    report._phi.update({"42": "id"})
    red = redact_report(report).checks[0]
    tok = red.facts["PatientID"]
    assert TOKEN_RE.fullmatch(tok) and tok.startswith("«id:")
    # a registered 2-character ID is a word of its own in a sentence: it goes (issue 11, item 4);
    # inside a port, a decimal number or a UID it is not the ID, and stays
    assert red.summary == f"port 4242: {tok} matches for patient {tok} (1.42 s, UID 1.2.42.7)"
    assert TOKEN_RE.fullmatch(red.facts["values"][0]) and red.facts["values"][1] == "x42"
    assert red.facts["count"] == 42


# -- the matching rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Müller^Jürgen", "MÜLLER^JÜRGEN", "müller^jürgen", "Müller", "JÜRGEN", "Jürgen Müller",
    "MÜLLER, Jürgen", "M%C3%BCller%5EJ%C3%BCrgen",
])
def test_name_variants(text):
    red = Redactor({"Müller^Jürgen": "name"})
    out = red.text(f"<{text}>")
    assert "ller" not in out.casefold() and "rgen" not in out.casefold(), out
    assert TOKEN_RE.search(out)


def test_names_in_scripts_without_spaces():
    red = Redactor({"Yamada^Taro=山田^太郎=やまだ^たろう": "name", "김^민준": "name"})
    out = red.text("患者 山田太郎さん, 山田, YAMADA Taro, やまだ, 김민준; "
                   "(0010,0010) PN [Yamada^Taro=山田^太郎=やまだ^たろう]")
    for part in ("山田", "太郎", "やまだ", "たろう", "YAMADA", "Taro", "김", "민준"):
        assert part.casefold() not in out.casefold(), (part, out)
    assert out.startswith("患者 «name:") and "さん" in out
    assert out.endswith(f"PN [{red.token('name', 'Yamada^Taro=山田^太郎=やまだ^たろう')}]")


@pytest.mark.parametrize("pattern, expected", [
    ("SMI*", r"«name:\w{6}»\*"),
    ("smi*", r"«name:\w{6}»\*"),
    ("*MITH", r"\*«name:\w{6}»"),
    ("SM?TH", r"«name:\w{6}»\?«name:\w{6}»"),
    ("JO*^SMI*", r"«name:\w{6}»\*\^«name:\w{6}»\*"),
    ("S*", r"S\*"),  # one letter reveals nothing
    ("ZZZ*", r"ZZZ\*"),  # not part of any registered name
    ("CT*", r"CT\*"),
])
def test_probe_patterns_derived_from_names(pattern, expected):
    red = Redactor({"SMITH^JOHN": "name"})
    assert re.fullmatch(expected, red.text(pattern)), red.text(pattern)


def test_names_are_not_replaced_inside_longer_words():
    red = Redactor({"ANN^LEE": "name"})
    ann, lee, whole = red.token("name", "ANN"), red.token("name", "LEE"), red.token("name", "ANN^LEE")
    assert red.text("ANNOUNCE the FLEET; Ann Lee; ann; LEE2") == f"ANNOUNCE the FLEET; {whole}; {ann}; {lee}2"
    # nor inside identifiers, but a file named after the patient is
    assert red.text("probe ann_exact: ANN_LEE.dcm") == f"probe ann_exact: {whole}.dcm"


@pytest.mark.parametrize("line, kept", [
    ("(0010,0010) PN [DOE^JANE]   # 8, 1 PatientName", "(0010,0010) PN ["),
    ("(0010,0010) Patient's Name   PN: 'DOE^JANE'", "(0010,0010) Patient's Name   PN: '"),
    ('(0010,0010) Patient\'s Name   PN: "O\'DOE^JANE"', "PN: \""),
    ("(0010,0020) LO [A\\B]", "(0010,0020) LO ["),
    ("PatientName=DOE^JANE, next", ", next"),
    ('"PatientName": "DOE^JANE"', '"PatientName": "'),
    ('"00100010":{"vr":"PN","Value":[{"Alphabetic":"DOE^JANE"}]}', '"vr":"PN"'),
])
def test_labelled_values_are_caught_without_registration(line, kept):
    out = Redactor({}).text(line)
    assert "DOE" not in out and "JANE" not in out and "[A" not in out, out
    assert kept in out and TOKEN_RE.search(out), out


def test_prose_after_a_tag_is_left_alone():
    red = Redactor({})
    for line in ("(0010,0010) is required at PATIENT level", "(0010,0010) PN (no value available)",
                 "(0008,0052) CS [STUDY]", "(0020,000D) UI [1.2.3.4]", "PatientName: empty"):
        assert red.text(line) == line


def test_birth_dates_in_other_notations():
    red = Redactor({"19610415": "birth_date"})
    out = red.text("born 19610415, 1961-04-15, 1961.04.15; study 196104150930 and 20240415")
    assert "1961" not in out.replace("196104150930", ""), out
    assert "196104150930" in out and "20240415" in out  # part of a longer number: not the date
    assert out.count("«birth_date:") == 3


def test_canonical_kinds():
    assert canonical_kind("name") == "name" and canonical_kind("PatientName") == "name"
    assert canonical_kind("birth_date") == "birth_date" and canonical_kind("dob") == "birth_date"
    assert canonical_kind("accession") == "accession" and canonical_kind("patient_id") == "id"
    assert canonical_kind("id") == "id" and canonical_kind("Weird Kind!") == "weird_kind"


def test_redaction_of_large_transcripts_is_fast():
    checks = sample_checks()
    lines = [f"{i * 0.001:8.3f}s D (0010,0010) PN [PATIENT{i % 50}^TEST]  # PatientName" if i % 7 == 0
             else f"{i * 0.001:8.3f}s D Find SCP Response: {i} - 0xFF00 (Pending)" for i in range(4000)]
    for c in checks:
        c.transcript = list(lines)
    report = build_report(checks)
    report._phi.update({f"PATIENT{i}^TEST": "name" for i in range(50)} | {f"ID{i:05d}": "id" for i in range(200)})
    t0 = time.monotonic()
    out = {fmt: render(report, fmt) for fmt in FORMATS}
    elapsed = time.monotonic() - t0
    assert "PATIENT1^" not in out["md"] and b"PATIENT1" not in zipfile.ZipFile(
        io.BytesIO(out["bundle"])).read("transcript.txt")
    assert elapsed < 10, elapsed


# -- issue 11: free text, short values, long values, failures -------------------------------------

def free_text_report() -> Report:
    comment = "Patient DOE^JANE (ID 4711-X, born 01.01.1970, acc A20240017) is locked; Roe, Richard too"
    checks = [CheckResult(
        id="retrieve.move", stage="retrieve", title="C-MOVE round trip", status=Status.FAIL,
        summary=f"the C-MOVE failed with 0xC000 with the comment {comment!r}",
        facts={"error_comment": comment, "peer_implementation": "WU^LI 19700101"},
        findings=[Finding(code="move-failed", severity=Severity.FAIL, summary=f"PACS said: {comment}",
                          explanation="e", fix="Ask the PACS administrator about QRDOCTOR at 10.1.2.3.",
                          evidence={"responses": [{"ErrorComment": comment, "status": "0xC000"}],
                                    "implementation_version_name": "Smith, John"})],
        transcript=["   0.001s D Their Implementation Version Name: KIM^MIN 1970-01-01",
                    f"   0.002s D Move SCP Response: 0xC000 {comment}"],
    )]
    report = build_report(checks)
    report._observations["retrieve.move"] = {"final": {"error_comment": comment}}
    return report


def test_free_text_from_the_peer_is_scrubbed_without_knowing_the_patient():
    # Given error comments and version names naming patients no check registered
    report = free_text_report()
    outputs = all_outputs(report)
    # Then none of them survives anywhere: not in the fields, not where a sentence quotes them
    for name, text in outputs.items():
        for value in ("DOE", "JANE", "4711", "01.01.1970", "1970", "A20240017", "Roe", "Richard",
                      "WU^LI", "Smith", "John", "KIM^MIN"):
            assert value.casefold() not in text.casefold(), (name, value)
    # And the words that are not patient data still read, in the field and in the sentences
    red = redact_report(report).checks[0]
    assert red.facts["error_comment"].endswith(" is locked; «name:" + red.facts["error_comment"].split("«name:")[-1])
    assert "is locked" in red.summary and "is locked" in red.findings[0].summary
    assert red.facts["error_comment"] in red.summary  # the same tokens where it is quoted
    assert "0xC000" in red.transcript[1] and "QRDOCTOR at 10.1.2.3" in red.findings[0].fix


@pytest.mark.parametrize("comment, kept", [
    ("Unknown move destination QRDOCTOR", "Unknown move destination QRDOCTOR"),
    ("Move destination unknown: QRDOCTOR at 10.1.2.3:11113", "Move destination unknown: QRDOCTOR at 10.1.2.3:11113"),
    ("Too many matches (limit 500)", "Too many matches (limit 500)"),
    ("StudyInstanceUID 1.2.840.113619.2.55.3 not found", "StudyInstanceUID 1.2.840.113619.2.55.3 not found"),
])
def test_comments_without_patient_data_stay_whole(comment, kept):
    checks = [CheckResult(id="retrieve.move", stage="retrieve", title="t", status=Status.FAIL,
                          facts={"error_comment": comment})]
    assert redact_report(build_report(checks)).checks[0].facts["error_comment"] == kept


def test_registered_short_ids_and_other_date_notations_never_leak_in_sentences():
    # Given a registered two-character patient ID and a birth date
    checks = [CheckResult(
        id="find.levels", stage="query", title="C-FIND", status=Status.WARN,
        summary="no images for 7Q (born 01.01.1970, 1/1/1970 or 01/01/1970); 7q again",
        findings=[Finding(code="x", severity=Severity.WARN, summary="patient 7Q, DOB 1970-01-01",
                          explanation="e", fix="f")],
    )]
    report = build_report(checks)
    report._phi.update({"7Q": "id", "19700101": "birth_date"})
    # Then neither is found in any output, in any case or notation
    for name, text in all_outputs(report).items():
        assert not re.search(r"(?i)(?<![0-9a-z])7q(?![0-9a-z])", text), name
        assert "1970" not in text, name


def test_a_64_kb_name_is_redacted_quickly_and_every_format_is_written():
    huge = "N" * 65536 + "^" + "GIVEN" * 10
    checks = sample_checks()
    checks[2].transcript = [f"   0.1s D (0010,0010) PN [{huge}]", f"matched {huge.lower()}"]
    checks[2].facts = {"PatientName": huge}
    report = build_report(checks)
    report._phi.update({huge: "name"})
    t0 = time.monotonic()
    outputs = all_outputs(report)
    assert time.monotonic() - t0 < 20
    for name, text in outputs.items():
        assert "NNNNNNNNNNNNNNNN" not in text.upper(), name


def test_data_nested_10000_deep_still_gives_a_report():
    deep: dict = {}
    node = deep
    for _ in range(10_000):
        node["inner"] = {}
        node = node["inner"]
    checks = sample_checks()
    checks[0].facts = {"sequence": deep}
    checks[0].findings = [Finding(code="x", severity=Severity.WARN, summary="s", explanation="e", fix="f",
                                  evidence={"sequence": deep})]
    report = build_report(checks)
    for fmt in FORMATS:
        assert render(report, fmt)
    for include_phi in (False, True):
        json.loads(render(report, "json", include_phi=include_phi))
    assert "nested deeper than" in render(report, "json")


def test_a_failing_redactor_removes_instead_of_leaking(monkeypatch):
    report = planted_report()

    # Given the redactor breaks on some strings
    original = Redactor._text

    def broken(self, s):
        if "Jürgen" in s or "JÜRGEN" in s or "778899" in s:
            raise RecursionError("simulated")
        return original(self, s)

    monkeypatch.setattr(Redactor, "_text", broken)
    # Then those strings are removed whole, and every format is still written, clean
    outputs = all_outputs(report)
    for name, text in outputs.items():
        assert_clean(name, text)
    assert "«removed:" in outputs["json"]

    # And when the redactor cannot even be built, every check loses its texts, nothing leaks
    def unbuildable(self, *args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(Redactor, "__init__", unbuildable)
    outputs = all_outputs(report)
    for name, text in outputs.items():
        assert_clean(name, text)
    data = json.loads(outputs["json"])
    assert [c["id"] for c in data["checks"]] == [c.id for c in report.checks]
    assert [c["status"] for c in data["checks"]] == [c.status.value for c in report.checks]
    assert all("could not redact" in c["summary"] for c in data["checks"])


def test_the_live_terminal_line_is_redacted_before_the_report_exists():
    from qrdoctor.core.model import TargetInfo
    from qrdoctor.reports.live import RedactedLiveSummary

    # Given a check that finished quoting a registered patient and an error comment
    out = io.StringIO()
    target = TargetInfo(host="10.9.8.7", port=4242, called_ae="PACS1", calling_ae="QRDOCTOR", move_ae="QRDOCTOR")
    live = RedactedLiveSummary(out, target, lambda: {"DOE^JANE": "name", "7Q": "id"})
    result = CheckResult(id="retrieve.move", stage="retrieve", title="C-MOVE", status=Status.FAIL,
                         summary="the C-MOVE of DOE^JANE (7Q) failed with the comment 'Roe, Richard is locked'",
                         facts={"error_comment": "Roe, Richard is locked"})
    # When its line is printed, before the run's report exists
    live.check_finished(None, result)
    line = out.getvalue()
    # Then it holds neither, and still reads
    assert "DOE" not in line and not re.search(r"\b7Q\b", line) and "Roe" not in line, line
    assert "is locked" in line and "retrieve.move" in line
    # and with --include-phi it is the summary as it is
    out = io.StringIO()
    RedactedLiveSummary(out, target, lambda: {"DOE^JANE": "name"}, include_phi=True).check_finished(None, result)
    assert "DOE^JANE" in out.getvalue()
