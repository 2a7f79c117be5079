"""The DICOMweb session fuzzer: seeded DICOMweb-only runs (``dicomweb.qido`` + ``dicomweb.wado``
through the Runner) against :class:`support.fuzzweb.WebFuzzPeer`, a proxy in front of the
simulated PACS's HTTP face that mutates its answers (:mod:`support.fuzzwebmutate`: status lines,
duplicate, huge and invalid headers, Content-Length lies, chunked encoding errors, truncated
bodies, compression bombs, invalid and deeply nested JSON, huge numbers, wrong types in DICOM
JSON, multipart boundary games, Warning and WWW-Authenticate variants, redirect loops, silence
and trickle). Every session must end with no traceback, no ``error`` result, within its budget,
with bounded memory, every report format rendered, and no raw control character or planted
markup in any report (:mod:`support.fuzzwebsession`).

A fixed list of seeds runs here, and every operator once on the first answer (the probe every
run depends on) and on the metadata answer; ``python scripts/fuzz_web_campaign.py`` runs long
campaigns (``--sweep``: every operator at every answer), ``--show SEED`` one session in full.
"""

from __future__ import annotations

import pytest

from support.fuzzwebmutate import OPERATORS
from support.fuzzwebsession import clean_count, run_web_session

pytestmark = pytest.mark.timeout(300)

CI_SEEDS = range(1, 13)
METADATA_EMISSION = 17  # .../series/{series}/metadata in a clean session (wado's first WADO-RS answer)
# Defects the campaigns found, each pinned to the strike that shows it (seed, emission, operator)
# and what broke; each failed before its fix.
REPRODUCERS = (
    ((462, 18, "redirect"), "a 30x to an instance with Location 'http://[::1' (an unclosed IPv6 bracket): "
                            "ValueError from urljoin in WebClient._get ended dicomweb.wado in error"),
    ((2195, 20, "redirect"), "the same Location on another WADO-RS variant request"),
    ((6, 1, "redirect"), "the same Location on the unlimited QIDO-RS query: dicomweb.qido in error"),
)


def test_a_clean_session_goes_through_the_peer():
    count = clean_count()
    assert count > METADATA_EMISSION
    v = run_web_session(0, count, pin=(count + 100, "garbage"))  # a strike never reached
    assert v.ok and v.mutations == [] and v.statuses == {"dicomweb.qido": "pass", "dicomweb.wado": "pass"}, \
        v.summary()


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_fuzzed_session(seed):
    v = run_web_session(seed, clean_count())
    assert v.ok, v.summary()


@pytest.mark.parametrize("emission", [0, METADATA_EMISSION])
def test_every_operator_at_a_key_answer(emission):
    failed = []
    for op in OPERATORS:
        v = run_web_session(1, pin=(emission, op))
        assert v.mutations == [f"{emission}:{op}"], v.summary()
        if not v.ok:
            failed.append(v.summary())
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize(("pin", "what"), REPRODUCERS, ids=[f"{p[0]}-{p[1]}-{p[2]}" for p, _ in REPRODUCERS])
def test_reproducer(pin, what):
    seed, emission, op = pin
    v = run_web_session(seed, pin=(emission, op))
    assert v.mutations[:1] == [f"{emission}:{op}"] and v.ok, f"{what}\n{v.summary()}"


def test_a_url_the_pacs_wrote_that_cannot_be_requested_is_an_error_not_an_exception():
    # a BulkDataURI or RetrieveURL from the PACS's DICOM JSON, used as is by WADO-RS
    from qrdoctor.dicomweb.http import WebClient

    with WebClient("http://127.0.0.1:9/dicom-web/", timeout=1) as web:
        for url in ("http://[::1/studies", "http://127.0.0.1:99999999/x", "http://h:port/x"):
            r = web.get(url)
            assert r.status is None and r.error is not None and r.error.kind == "protocol", url
        assert len(web.exchanges) == 3
