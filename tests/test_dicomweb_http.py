"""The DICOMweb HTTP layer: bounded reads, redirects, credentials, TLS; challenges, JWTs and
Warning headers."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from qrdoctor.dicomweb import http as webhttp
from qrdoctor.dicomweb.auth import (
    PASSWORD_ENV,
    Credentials,
    CredentialsError,
    decode_jwt,
    parse_challenges,
)
from qrdoctor.dicomweb.http import WebClient
from qrdoctor.dicomweb.warning import parse_warning

from support.webpeer import Reply, WebPeer, raw_bytes, silent, trickle

JSON = [("Content-Type", "application/dicom+json")]


def _basic() -> Credentials:
    return Credentials.basic_from_env("radiology", {PASSWORD_ENV: "s3cr3t-pw"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_plain_answer_is_read_with_its_headers_and_recorded():
    with WebPeer() as peer:
        peer.route("/dicom-web/studies", Reply(200, [*JSON, ("Warning", '299 X "There are 2 additional results"'),
                                                     ("Set-Cookie", "sid=abc")], b"[]"))
        with WebClient(peer.url + "dicom-web", credentials=_basic(), timeout=5) as client:
            r = client.get("studies", params={"limit": 1}, accept="application/dicom+json")
    assert r.ok and r.status == 200 and r.body == b"[]" and not r.body_truncated
    assert r.media_type == "application/dicom+json"
    assert r.headers_all("warning") == ['299 X "There are 2 additional results"']
    assert r.url.endswith("/dicom-web/studies?limit=1")
    path, query, headers = peer.requests[0]
    assert (path, query) == ("/dicom-web/studies", "limit=1")
    assert headers["accept"] == "application/dicom+json" and headers["authorization"].startswith("Basic ")
    [ex] = client.exchanges
    text = json.dumps(ex.as_dict())
    assert ex.status == 200 and ex.credentials_sent and "warning" in ex.headers
    assert "set-cookie" not in text.lower() and "sid=abc" not in text
    assert all(s not in text for s in _basic().secrets())


def test_credentials_never_show_and_come_only_from_env_or_file(tmp_path):
    creds = _basic()
    assert "s3cr3t-pw" not in repr(creds) and "s3cr3t-pw" not in str(creds)
    assert "s3cr3t-pw" in creds.secrets()
    assert base64.b64encode(b"radiology:s3cr3t-pw").decode() in creds.secrets()
    with pytest.raises(CredentialsError, match=PASSWORD_ENV):
        Credentials.basic_from_env("radiology", {})
    token = tmp_path / "token"
    token.write_text("  SIMULATED-TOKEN\n")
    bearer = Credentials.bearer_from_file(token)
    assert bearer.authorization() == "Bearer SIMULATED-TOKEN" and "SIMULATED" not in repr(bearer)
    token.write_text("")
    with pytest.raises(CredentialsError, match="empty"):
        Credentials.bearer_from_file(token)
    with pytest.raises(CredentialsError, match="cannot read"):
        Credentials.bearer_from_file(tmp_path / "missing")


def test_refused_and_dns_failures_are_named(monkeypatch):
    port = _free_port()
    with WebClient(f"http://127.0.0.1:{port}/dicom-web/", timeout=3) as client:
        r = client.get("studies")
    assert r.status is None and r.error is not None and r.error.kind == "refused"
    assert client.exchanges[0].error.startswith("refused")

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with WebClient("http://pacs.invalid/dicom-web/", timeout=3) as client:
        r = client.get("studies")
    assert r.error is not None and r.error.kind == "dns" and "pacs.invalid" in r.error.detail

    def slow_dns(*args, **kwargs):
        time.sleep(4)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "getaddrinfo", slow_dns)
    with WebClient("http://pacs.invalid/dicom-web/", timeout=1) as client:
        t0 = time.monotonic()
        r = client.get("studies")
    assert time.monotonic() - t0 < 2 and r.error is not None and r.error.kind == "dns"
    assert "within the time limit" in r.error.detail


@pytest.mark.parametrize("how", ["silent", "trickle-body", "trickle-headers"])
def test_the_whole_exchange_ends_at_the_timeout(how):
    with WebPeer() as peer:
        if how == "silent":
            peer.route("/x", silent(peer.stop))
        elif how == "trickle-body":
            peer.route("/x", trickle(b"HTTP/1.1 200 OK", b"Content-Length: 1000\r\n", b"a" * 1000, 0.02, peer.stop))
        else:
            peer.route("/x", trickle(b"HTTP/1.1 200 OK", b"", b"X-Slow: " + b"b" * 1000, 0.02, peer.stop))
        with WebClient(peer.url, timeout=1.0) as client:
            t0 = time.monotonic()
            r = client.get("/x")
            took = time.monotonic() - t0
    assert r.error is not None and r.error.kind == "timeout", r.error
    assert took < 2.0
    if how == "trickle-body":
        assert r.status == 200 and r.body_truncated and 0 < len(r.body) < 1000


def test_headers_and_bodies_are_bounded():
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    huge = b"X-Big: " + b"z" * 200_000 + b"\r\n"
    with WebPeer() as peer:
        peer.route("/many", raw_bytes(b"HTTP/1.1 200 OK\r\n" + many + b"Content-Length: 2\r\n\r\nok"))
        peer.route("/huge", raw_bytes(b"HTTP/1.1 200 OK\r\n" + huge + b"Content-Length: 2\r\n\r\nok"))
        peer.route("/body", Reply(200, [], b"y" * 5000))
        with WebClient(peer.url, timeout=5, max_body=1000) as client:
            many_r, huge_r, body_r = client.get("/many"), client.get("/huge"), client.get("/body")
    assert many_r.status == 200 and len(many_r.headers) == webhttp.MAX_HEADERS and many_r.headers_truncated
    assert huge_r.error is not None and huge_r.error.kind == "too-large"
    assert body_r.status == 200 and body_r.body_truncated and len(body_r.body) == 1000
    assert body_r.error is not None and body_r.error.kind == "too-large"


def test_identity_is_asked_and_a_compressed_body_is_decoded_within_the_bound():
    text = b'[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]'
    with WebPeer() as peer:
        peer.route("/gz", Reply(200, [*JSON, ("Content-Encoding", "gzip")], gzip.compress(text)))
        peer.route("/bomb", Reply(200, [*JSON, ("Content-Encoding", "gzip")], gzip.compress(b"[" + b" " * 5_000_000)))
        peer.route("/br", Reply(200, [*JSON, ("Content-Encoding", "br")], b"xx"))
        with WebClient(peer.url, timeout=5, max_body=100_000) as client:
            gz, bomb, br = client.get("/gz"), client.get("/bomb"), client.get("/br")
    assert peer.requests[0][2]["accept-encoding"] == "identity"
    assert gz.ok and gz.body == text
    assert bomb.error is not None and bomb.error.kind == "too-large" and len(bomb.body) == 100_000
    assert br.error is not None and br.error.kind == "protocol" and "Content-Encoding br" in br.error.detail


def test_garbage_and_abrupt_close_are_protocol_or_reset():
    with WebPeer() as peer:
        peer.route("/garbage", raw_bytes(b"<html>hello</html>\r\n\r\n"))
        peer.route("/close", raw_bytes(b""))
        with WebClient(peer.url, timeout=3) as client:
            g, c = client.get("/garbage"), client.get("/close")
    assert g.status is None and g.error is not None and g.error.kind == "protocol"
    assert c.status is None and c.error is not None and c.error.kind == "reset"


def test_redirects_are_recorded_bounded_and_kept_on_the_host():
    with WebPeer() as peer, WebPeer() as other:
        for i in range(6):
            peer.route(f"/loop{i}", Reply(302, [("Location", f"/loop{i + 1}")]))
        peer.route("/a", Reply(301, [("Location", "/b")]))
        peer.route("/b", Reply(200, JSON, b"[]"))
        peer.route("/away", Reply(302, [("Location", f"http://localhost:{peer.port}/b")]))
        peer.route("/port", Reply(307, [("Location", f"{other.url}login")]))
        other.route("/login", Reply(200, [("Content-Type", "text/html")], b"<html>login</html>"))
        with WebClient(peer.url, credentials=_basic(), timeout=5) as client:
            a, loop, away, port = (client.get(p) for p in ("/a", "/loop0", "/away", "/port"))
    assert a.status == 200 and [(r.status, r.location, r.followed) for r in a.redirects] == [(301, "/b", True)]
    assert loop.status == 302 and len(loop.redirects) == 4 and not loop.redirects[-1].followed
    assert "more than 3" in loop.redirects[-1].reason
    assert away.status == 302 and not away.redirects[0].followed and "host" in away.redirects[0].reason
    # same scheme and host, another port: followed, but the credentials stay with the base origin
    assert port.status == 200 and port.media_type == "text/html" and port.redirects[0].followed
    assert "authorization" not in other.requests[0][2]
    assert [p for p, _, _ in peer.requests].count("/b") == 1  # "/away" was not followed


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("webpki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            "-subj", "/CN=qrdoctor web test CA")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "30", "-extfile", "san.ext")
    return d


def test_https_with_a_ca_file_without_and_unverified(pki):
    with WebPeer(tls=(str(pki / "srv.pem"), str(pki / "srv.key"))) as peer:
        peer.route("/dicom-web/studies", Reply(200, JSON, b"[]"))
        assert peer.url.startswith("https://")
        with WebClient(peer.url + "dicom-web/", ca_file=str(pki / "ca.pem"), timeout=5) as client:
            good = client.get("studies")
        with WebClient(peer.url + "dicom-web/", timeout=5) as client:
            untrusted = client.get("studies")
        with WebClient(peer.url + "dicom-web/", verify=False, timeout=5) as client:
            unverified = client.get("studies")
    assert good.ok and good.body == b"[]"
    assert untrusted.error is not None and untrusted.error.kind == "tls" and "certificate" in untrusted.error.detail
    assert unverified.ok


def test_plain_http_to_a_tls_port_is_not_a_success(pki):
    with WebPeer(tls=(str(pki / "srv.pem"), str(pki / "srv.key"))) as peer:
        with WebClient(f"http://127.0.0.1:{peer.port}/", timeout=2) as client:
            r = client.get("studies")
    assert r.status is None or r.status >= 400
    assert r.status is not None or r.error is not None


# --- challenges, JWTs, warnings -------------------------------------------------------------

def test_challenges_follow_rfc7235():
    [basic] = parse_challenges('Basic realm="SIMPACS"')
    assert basic.scheme == "Basic" and basic.realm == "SIMPACS"
    bearer, second = parse_challenges('Bearer realm="x", error="invalid_token", '
                                      'error_description="The token, it \\"expired\\"", Basic realm="a,b"')
    assert bearer.params == {"realm": "x", "error": "invalid_token",
                             "error_description": 'The token, it "expired"'}
    assert second.scheme == "Basic" and second.realm == "a,b"
    assert [c.scheme for c in parse_challenges("Negotiate, NTLM")] == ["Negotiate", "NTLM"]
    assert parse_challenges("Negotiate abcd==")[0].token68 == "abcd=="
    assert parse_challenges("") == [] and parse_challenges(",, ,") == []
    assert parse_challenges('Basic REALM=plain')[0].realm == "plain"


def _jwt(header: dict, payload: dict, sig: str = "c2lnbmF0dXJl") -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc(header)}.{enc(payload)}.{sig}"


def test_jwt_claims_are_decoded_without_the_signature():
    token = _jwt({"alg": "RS256", "typ": "JWT"}, {"iss": "https://idp.example/realms/pacs", "aud": ["pacs", 3],
                                                 "exp": 1700000000, "nbf": 1600000000.0, "iat": 1600000000,
                                                 "azp": "viewer", "scope": "openid dicomweb"})
    claims = decode_jwt(token)
    assert claims is not None and claims.alg == "RS256" and claims.iss == "https://idp.example/realms/pacs"
    assert claims.aud == ["pacs"] and claims.exp == 1700000000 and claims.nbf == 1600000000
    assert claims.azp == "viewer" and claims.scope == "openid dicomweb"
    assert claims.expired(1700000001) and not claims.expired(1699999999)
    assert "c2lnbmF0dXJl" not in json.dumps(claims.as_dict())
    assert decode_jwt("SIMULATED-TOKEN") is None
    assert decode_jwt("a.b.c") is None
    assert decode_jwt("a.b.c.d.e") is None
    assert decode_jwt(_jwt({"typ": "JWT"}, {"iss": "x"})) is None  # no alg: not a JWS header


def test_warning_values_follow_rfc7234_and_the_dicomweb_wordings():
    [w] = parse_warning(['299 SIMPACS "There are 7 additional results that can be requested"'])
    assert (w.code, w.agent, w.additional) == (299, "SIMPACS", 7) and w.mentions_additional_results
    two = parse_warning(['299 host:8080 "There are 12 additional results" "Sat, 01 Jan 2000 00:00:00 GMT", '
                         '299 x "The fuzzymatching parameter is not supported."'])
    assert [(v.agent, v.additional) for v in two] == [("host:8080", 12), ("x", None)]
    assert "fuzzymatching" in two[1].text
    [legacy] = parse_warning(["299 {service}: The number of results exceeded the maximum supported by the "
                              "server. Additional results can be requested."])
    assert legacy.agent == "{service}" and legacy.additional is None and legacy.mentions_additional_results
    assert parse_warning(["garbage", "", "12 x y"]) == []


def test_a_kept_alive_connection_the_server_closed_is_not_taken_for_a_broken_server():
    # Given a server that closes each connection right after its answer (as servers do when their
    # idle-connection timeout ends), so the client may send its next request on a dead connection
    with WebPeer() as peer:
        peer.route("/first", raw_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        peer.route("/next", Reply(200, [], b"fine"))
        with WebClient(peer.url, timeout=5) as client:
            # When the next request follows at once, again and again
            answers = []
            for _ in range(300):
                client.get("/first")
                answers.append(client.get("/next"))
    # Then every one was answered (a GET is sent again once on a new connection)
    assert all(r.status == 200 and r.body == b"fine" for r in answers), [r.error for r in answers if r.error]
