"""The findings of dicomweb.qido, with the real URLs, statuses and counts filled in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from qrdoctor.checks.dicomweb.common import WebAnswer
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Finding, Severity, actions


def endpoint_finding(s: Situation, url: str, a: WebAnswer) -> Finding:
    """The endpoint cannot be used: no HTTP answer, TLS, a server error, or not DICOM JSON."""
    ev = a.evidence()
    if a.error == "tls":
        return s.finding(
            "dicomweb-tls-failed", Severity.FAIL,
            f"The TLS handshake with {url} failed: {a.error_detail}.",
            actions(
                pacs="Make the DICOMweb server present a certificate for the host name in the URL, "
                     "with its whole chain, signed by a CA the workstations trust.",
                workstation=f"If the PACS uses a private CA, install that CA on the workstation or "
                            f"viewer that uses {url}.",
                tester="Re-test with --dicomweb-ca FILE naming the CA (PEM) that signed the "
                       "PACS's certificate."),
            **ev)
    if a.error is not None:
        host = urlsplit(url).hostname or url
        where = {"dns": f"The host name {host} does not resolve on this computer: check the URL's host "
                        "name, or use the PACS's IP address.",
                 "refused": f"Nothing listens on the port of {url}: check the port and http/https in the "
                            "viewer's DICOMweb URL."}.get(a.error, f"Check the DICOMweb base URL configured in "
                                                                   f"the viewer ({url}): host, port and http/https.")
        return s.finding(
            "dicomweb-unreachable", Severity.FAIL,
            f"No HTTP answer from {url}: {a.error_detail}.",
            actions(
                pacs="Check that the DICOMweb service runs and listens on the host and port of the URL, "
                     "and that a firewall or reverse proxy lets the workstation reach it.",
                workstation=where,
                tester="Re-test with a larger --timeout if the server is only slow." if a.error == "timeout" else None),
            **ev)
    if a.status is not None and a.status >= 500:
        return s.finding(
            "dicomweb-server-error", Severity.FAIL,
            f"The DICOMweb server at {url} answered {a.what} with HTTP {a.status} {a.reason}.".strip(),
            actions(
                pacs=f"Look in the DICOMweb server's log at the time of this request ({a.what}) for the "
                     f"error behind the HTTP {a.status} answer; a reverse proxy answers 502, 503 or 504 "
                     "when the archive behind it is down or too slow.",
                users="Web viewers and AI nodes using this URL get no study list until it is fixed."),
            **ev)
    what = (f"HTTP {a.status} with {a.content_type or 'no Content-Type'}" if a.status is not None
            else "an answer")
    return s.finding(
        "dicomweb-not-dicomweb", Severity.FAIL,
        f"{url} answered {a.what} with {what}, not DICOM JSON ({a.json_problem or 'not a QIDO-RS answer'}).",
        actions(
            pacs="Check what answers at this URL: a login page or a proxy error page answers in place "
                 "of the DICOMweb service when the proxy route or the authentication in front of it "
                 "is set up for browsers only.",
            workstation=f"Check the DICOMweb base URL configured in the viewer ({url}); it must be the "
                        "address that comes before /studies."),
        **ev)


def root_finding(s: Situation, url: str, found: str | None, probe: WebAnswer, tried: list[WebAnswer]) -> Finding:
    ev = probe.evidence() | {"roots_tried": [{"url": a.url, "status": a.status, "dicom_json": a.dicom_json}
                                             for a in tried]}
    if found:
        return s.finding(
            "dicomweb-wrong-root", Severity.FAIL,
            f"{url}studies answered 404; the DICOMweb service answers at {found} instead.",
            actions(
                workstation=f"Set the viewer's DICOMweb base URL to {found} (not {url}).",
                tester=f"Re-test with --dicomweb {found}."),
            suggested_root=found, **ev)
    return s.finding(
        "dicomweb-wrong-root", Severity.FAIL,
        f"{url}studies answered 404, and none of the usual DICOMweb roots on the same server answered "
        "DICOM JSON.",
        actions(
            pacs="Give the exact DICOMweb (QIDO-RS) base URL the PACS serves, and check that its "
                 "DICOMweb service is enabled.",
            workstation=f"Correct the viewer's DICOMweb base URL ({url}) to the one the PACS administrator gives.",
            tester="Re-test with --dicomweb set to that URL."),
        **ev)


def access_finding(s: Situation, url: str, a: WebAnswer, auth: dict[str, Any]) -> Finding:
    ev = a.evidence() | {"auth": auth}
    scheme, realm = auth.get("scheme"), auth.get("realm")
    how = f"{scheme} authentication" + (f' (realm "{realm}")' if realm else "") if scheme else "authentication"
    if a.status == 403:
        return s.finding(
            "dicomweb-forbidden", Severity.FAIL,
            f"{url} refused the query with HTTP 403: the credentials ({auth.get('credentials') or 'none'}) "
            "are known but not allowed to search studies.",
            actions(
                pacs="Give this user or token's client the role or permission to query studies "
                     "(QIDO-RS) on this archive.",
                tester="Re-test after the change, with the same --dicomweb-user or --dicomweb-token-file."),
            **ev)
    if auth.get("outcome") == "required":
        return s.finding(
            "dicomweb-auth-required", Severity.FAIL,
            f"{url} requires {how}: it answered HTTP 401 to a query without credentials.",
            actions(
                workstation="Configure the viewer's DICOMweb connection with an account (or token) of "
                            "this archive.",
                tester=("Re-test with --dicomweb-user USER and the password in the environment variable "
                        "QRDOCTOR_DICOMWEB_PASSWORD" if (scheme or "").lower() != "bearer"
                        else "Re-test with --dicomweb-token-file FILE holding a bearer token") + "."),
            **ev)
    expired = " The bearer token has expired." if auth.get("token_expired") else ""
    return s.finding(
        "dicomweb-auth-rejected", Severity.FAIL,
        f"{url} rejected our credentials ({auth.get('credentials')}) with HTTP 401 ({how}).{expired}",
        actions(
            pacs="Check that the account exists and is enabled for DICOMweb (or that the token's "
                 "issuer and audience are the ones this archive trusts).",
            workstation="Correct the user name and password (or renew the token) in the viewer's "
                        "DICOMweb connection.",
            tester="Re-test with the corrected --dicomweb-user and QRDOCTOR_DICOMWEB_PASSWORD, or a "
                   "fresh --dicomweb-token-file."),
        **ev)


def limit_refused_finding(s: Situation, url: str, a: WebAnswer, limit: int | None) -> Finding:
    if limit is None:
        return s.finding(
            "dicomweb-limit-refused", Severity.FAIL,
            f"{url} refused the study query without a limit ({a.what}) with HTTP {a.status}: it refuses "
            "queries that match more than its configured maximum instead of returning part of them.",
            actions(
                pacs="Raise the maximum number of matches the DICOMweb server accepts for one query "
                     "(e.g. QueryMaxNumberOfResults in dcm4chee-arc), or have it return its maximum "
                     "number of results with a Warning header instead (PS3.18 8.3.4.4.1).",
                workstation="Configure the viewer to send a limit with every search, below the "
                            "server's maximum.",
                users="Broad searches (all studies of a day, of a modality) fail on this server: "
                      "search by Patient ID or a narrow date range."),
            limit=None, **a.evidence())
    if limit <= 1:
        return s.finding(
            "dicomweb-limit-refused", Severity.WARN,
            f"{url} refused {a.what} with HTTP {a.status}: it does not accept the limit parameter at all.",
            actions(
                pacs="QIDO-RS servers must accept limit and offset (PS3.18 8.3.4.4); check whether a proxy "
                     "rule refuses query parameters, otherwise report it to the vendor.",
                workstation="A viewer that sends limit (most do, to page through results) gets an error "
                            "from this server: configure it not to, if it can."),
            limit=limit, **a.evidence())
    return s.finding(
        "dicomweb-limit-refused", Severity.WARN,
        f"{url} refused {a.what} with HTTP {a.status}: it does not accept limit={limit}.",
        actions(
            pacs=f"PS3.18 8.3.4.4.1 has the server answer a limit above its own maximum with its maximum "
                 f"number of results, not refuse it: if a configuration or a proxy rule refuses limit={limit}, "
                 "change it; otherwise report it to the vendor.",
            workstation=f"Configure the viewer to ask pages smaller than {limit} results from this server.",
            users="Searches from a client that asks for this many results at once fail instead of "
                  "showing a partial list."),
        limit=limit, **a.evidence())


def paging_finding(s: Situation, url: str, paging: dict[str, Any], p1: WebAnswer | None,
                   p2: WebAnswer | None) -> Finding:
    size = p1.rows if p1 else None
    return s.finding(
        "dicomweb-paging-ignored", Severity.WARN,
        f"{url} ignores offset: the page at offset {size} returned the same {size} studies as the first page.",
        actions(
            pacs="Enable or fix QIDO-RS paging (limit and offset, PS3.18 8.3.4.4) on the DICOMweb server.",
            workstation="A viewer that pages through results loops on the first page or shows it twice: "
                        "configure it to ask one page large enough for a search, if it can.",
            users="In long study lists, results after the first page are missing or repeated: narrow "
                  "searches (Patient ID, date range)."),
        paging=paging)


def truncated_finding(s: Situation, url: str, n: int, proof: list[str], warning: dict[str, Any] | None,
                      paging: dict[str, Any]) -> Finding:
    signalled = bool(warning and warning.get("more_results"))
    how = "and says so in a Warning header" if signalled else "without saying so"
    beyond = (paging or {}).get("beyond_end") or {}
    if paging.get("offset_ignored"):
        client = ("Paging does not help on this server (it ignores offset): only narrower searches "
                  "(Patient ID, date range, modality) return the studies past the cap.")
    elif beyond.get("rows") == 0:
        client = (f"Paging does not reach past the cap on this server: a page at offset {n} came back "
                  "empty although more studies match. Only narrower searches (Patient ID, date range, "
                  "modality) return the rest.")
    else:
        client = ("The viewer must page with limit and offset until a page comes back empty (a page "
                  f"past the first {n} did hold more studies here), or read the Warning header, to "
                  "show every study.")
    return s.finding(
        "dicomweb-truncated", Severity.WARN,
        f"{url} cut the study list at {n} results {how}: " + "; ".join(proof) + ".",
        actions(
            pacs="Raise the DICOMweb server's maximum number of QIDO-RS results if broad searches must "
                 "be complete (e.g. QidoMaxNumberOfResults in dcm4chee-arc), or make paging reach "
                 "every result.",
            workstation=client,
            users=f"A study list of {n} entries from this server may be incomplete: narrow the search."),
        cap=n, proof=proof, warning=warning)


def includefield_finding(s: Situation, url: str, inc: dict[str, Any]) -> Finding:
    named = inc.get("named_returned")
    if named:
        return s.finding(
            "dicomweb-includefield-ignored", Severity.INFO,
            f"{url} ignores includefield=all (the same {inc['default_attributes']} attributes as without "
            f"it) but returns an attribute named in includefield ({inc.get('named')}).",
            actions(
                workstation="A viewer that needs attributes beyond the default ones gets them by naming "
                            "each in includefield (e.g. includefield=00081030), not with includefield=all."),
            includefield=inc)
    return s.finding(
        "dicomweb-includefield-ignored", Severity.WARN,
        f"{url} returned the same {inc['default_attributes']} attributes with includefield=all as without "
        "it" + (f", and not {inc.get('named')} when named in includefield either" if named is False else "")
        + ".",
        actions(
            pacs="Check that the DICOMweb server supports includefield (PS3.18 8.3.4.3); if its default "
                 "answer already holds every attribute it stores for a study, nothing needs to change.",
            workstation="A viewer that needs attributes beyond the default ones (e.g. Study Description) "
                        "cannot rely on includefield with this server."),
        includefield=inc)
