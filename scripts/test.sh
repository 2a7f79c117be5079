#!/usr/bin/env bash
# The one command that installs what the tests need and runs them.
#
#   bash scripts/test.sh [pytest args...]     (CI: `bash .ci/run` on a clean checkout, CI=true)
#
# On a fresh Debian bookworm machine (as root, or with sudo) it:
#   1. installs Debian's orthanc, orthanc-dicomweb, dcmtk and tmux when one of them is missing --
#      the real DICOM peers the test suite starts on loopback, and the terminal for the TUI's
#      end-to-end test;
#   2. creates a fresh virtual environment (.venv-test) and installs qrdoctor with its test
#      extra there -- nothing from the system's Python leaks into the test run;
#   3. runs pytest from that environment with "$@". Pytest's exit code 5 ("no tests were collected", e.g. a
#      -k that matches nothing) is turned into 0; every other code is passed through.
#
# Installing the orthanc package may register (and try to start) a system-wide Orthanc service
# on ports 4242/8042. Our tests never use those ports: each test starts its own Orthanc on
# ports chosen at run time. While the packages install, a temporary /usr/sbin/policy-rc.d
# (only if none exists) keeps dpkg from starting services, as in Docker images; a service
# that is already running is left alone.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
ORTHANC_BIN=/usr/sbin/Orthanc
DICOMWEB_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
DCMQRSCP_BIN=/usr/bin/dcmqrscp

log() { printf 'test.sh: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "not root and no sudo: cannot install system packages"
    fi
fi

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
cleanup() {
    if [ "$POLICY_RC_OURS" = 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY_RC" || true
    fi
}
trap cleanup EXIT

if [ ! -x "$ORTHANC_BIN" ] || [ ! -f "$DICOMWEB_PLUGIN" ] || [ ! -x "$DCMQRSCP_BIN" ] \
        || ! command -v tmux >/dev/null 2>&1; then
    log "installing Debian packages: orthanc orthanc-dicomweb dcmtk tmux"
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\n# temporary, from qrdoctor scripts/test.sh: no service starts\nexit 101\n' \
            | "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
        "${SUDO[@]}" chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
    "${SUDO[@]}" apt-get -o Acquire::Retries=3 update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o Acquire::Retries=3 install -y --no-install-recommends \
        orthanc orthanc-dicomweb dcmtk tmux
    cleanup
    POLICY_RC_OURS=0
fi
for f in "$ORTHANC_BIN" "$DICOMWEB_PLUGIN" "$DCMQRSCP_BIN"; do
    [ -e "$f" ] || { log "still missing after install: $f"; exit 1; }
done

# The tests run in a virtual environment of their own, created afresh by this script, so that
# only the dependencies pyproject.toml declares exist there: a package that merely happens to be
# installed on this machine cannot hide a missing declaration. QRDOCTOR_TEST_VENV moves it;
# QRDOCTOR_REUSE_VENV=1 keeps an existing one (faster local re-runs; CI always starts afresh).
VENV="${QRDOCTOR_TEST_VENV:-.venv-test}"
if [ "${QRDOCTOR_REUSE_VENV:-0}" != 1 ] || [ ! -x "$VENV/bin/python" ]; then
    log "creating a fresh virtual environment in $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
log "installing qrdoctor with its test extra into $VENV"
"$VPY" -m pip install --disable-pip-version-check --quiet --upgrade pip
"$VPY" -m pip install --disable-pip-version-check --quiet -e '.[test]'

log "lint: ruff check"
"$VPY" -m ruff check .

set +e
"$VPY" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    log "pytest collected no tests (exit 5); reporting success"
    rc=0
fi
exit "$rc"
