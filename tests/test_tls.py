"""DICOM over TLS: the network.tls check and every stage over a TLS association."""

from __future__ import annotations

import ssl
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import Dataset
from pynetdicom import AE, evt

from qrdoctor.core.model import Status
from qrdoctor.core.target import TLSOptions

from support.faults import QR_CONTEXTS
from support.run import codes, result, run


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "400", "-subj", "/CN=qrdoctor test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    # server: a year; short: a server certificate that expires in two days; client: mutual TLS
    for name, cn, days in (("server", "127.0.0.1", "365"), ("short", "127.0.0.1", "2"), ("client", "QRDOCTOR", "365")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        extra = ["-extfile", "san.ext"] if name != "client" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", days, *extra, cwd=d)
    return d


def one_study(event):
    ds = Dataset()
    ds.QueryRetrieveLevel = event.identifier.QueryRetrieveLevel
    ds.PatientName, ds.PatientID = "DOE^JANE", "P1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4", "1.2.3.4.5"
    ds.StudyDate, ds.Modality = "20200101", "CT"
    yield 0xFF00, ds


@contextmanager
def tls_scp(pki: Path, require_client_cert: bool = False, cert: str = "server"):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    ae = AE(ae_title="TLSPACS")
    for uid in QR_CONTEXTS:
        ae.add_supported_context(uid)
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ctx,
                             evt_handlers=[(evt.EVT_C_FIND, one_study)])
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        ae.shutdown()


def test_tls_pacs_with_its_ca(pki):
    # Given a TLS-only PACS whose certificate our CA file vouches for
    with tls_scp(pki) as port:
        report = run(port, called_ae="TLSPACS", only=["find.levels"],
                     tls=TLSOptions(ca_file=str(pki / "ca.pem")))
    # Then the handshake is verified and every stage works over TLS
    tls = result(report, "network.tls")
    assert tls.status is Status.PASS
    assert tls.facts["verified"] is True and tls.facts["version"].startswith("TLS")
    assert "commonName=127.0.0.1" in tls.facts["subject"] and "qrdoctor test CA" in tls.facts["issuer"]
    assert 360 <= tls.facts["days_left"] <= 365
    for check_id in ("association.echo", "find.levels"):
        assert result(report, check_id).status is Status.PASS, result(report, check_id)
    # (the test SCP offers Study Root FIND/MOVE and Patient Root FIND only: a warning, over TLS too)
    assert result(report, "association.models").facts["models"]["study_root"]["find"] is True
    assert report.target.tls["ca_file"].endswith("ca.pem")


def test_untrusted_certificate(pki):
    # Given the same PACS, but no CA file: its private CA is not in the system trust store
    with tls_scp(pki) as port:
        report = run(port, called_ae="TLSPACS", tls=TLSOptions())
    tls = result(report, "network.tls")
    (f,) = tls.findings
    assert f.code == "tls-handshake-failed" and "--tls-ca" in f.fix
    assert "qrdoctor test CA" in f.evidence["presented"]["issuer"]
    assert result(report, "association.echo").blocked_by == "network.tls"


def test_client_certificate_required(pki):
    with tls_scp(pki, require_client_cert=True) as port:
        without = run(port, called_ae="TLSPACS", only=["network.tls"], tls=TLSOptions(ca_file=str(pki / "ca.pem")))
        with_cert = run(port, called_ae="TLSPACS", only=["association.echo"],
                        tls=TLSOptions(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                                       key_file=str(pki / "client.key")))
    (f,) = result(without, "network.tls").findings
    assert f.code == "tls-handshake-failed" and "client certificate" in f.summary and "--tls-cert" in f.fix
    assert result(with_cert, "network.tls").status is Status.PASS
    assert result(with_cert, "association.echo").status is Status.PASS


def test_plain_dicom_does_not_need_tls():
    from support.faults import dicom_scp

    with dicom_scp() as port:
        report = run(port, only=["association.echo"])
    tls = result(report, "network.tls")
    assert tls.status is Status.SKIPPED and tls.reason.startswith("not applicable")
    assert result(report, "association.echo").status is Status.PASS


def test_certificate_about_to_expire(pki):
    # Given a PACS certificate valid for two more days (the warning window is 30 days)
    with tls_scp(pki, cert="short") as port:
        report = run(port, called_ae="TLSPACS", only=["network.tls"], tls=TLSOptions(ca_file=str(pki / "ca.pem")))
    assert codes(report, "network.tls") == {"tls-certificate-expiring"}
    assert result(report, "network.tls").status is Status.WARN


def test_a_saved_profile_keeps_the_tls_options(pki, tmp_path, monkeypatch):
    from qrdoctor.core.profiles import save_profile
    from qrdoctor.core.target import Target, target_from_profile

    # Given a TLS target saved as a profile
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(tmp_path / "profiles.toml"))
    tls = TLSOptions(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                     key_file=str(pki / "client.key"))
    save_profile("secure", Target("127.0.0.1", 2762, "TLSPACS", tls=tls))
    # When it is loaded again, the TLS options come back
    loaded = target_from_profile("secure", {})
    assert loaded.tls == tls
    # And against the TLS PACS it works as a saved profile
    with tls_scp(pki, require_client_cert=True) as port:
        report = run(port, called_ae="TLSPACS", only=["association.echo"], tls=loaded.tls)
    assert result(report, "association.echo").status is Status.PASS


def test_an_unverified_certificate_reads_as_getpeercert_shows_a_verified_one(pki):
    from qrdoctor.dicom.tls import certificate_facts, connect, decode_der

    # Given the PACS's certificate, once from a verified connection and once unverified
    with tls_scp(pki) as port:
        with connect("127.0.0.1", port, 5, TLSOptions(ca_file=str(pki / "ca.pem"))) as verified:
            expected = verified.getpeercert()
        with connect("127.0.0.1", port, 5, TLSOptions(verify=False)) as unverified:
            der = unverified.getpeercert(binary_form=True)
            facts = certificate_facts(unverified)
    # Then our decoder reads the DER bytes as the standard library shows a verified certificate
    decoded = decode_der(der)
    for key in ("subject", "issuer", "notBefore", "notAfter", "subjectAltName", "version"):
        assert decoded[key] == expected[key], key
    assert facts["names"] == ["127.0.0.1", "localhost"] and 360 <= facts["days_left"] <= 365
    assert decode_der(b"\x30\x03\x02\x01") == {}  # truncated: nothing rather than an error
