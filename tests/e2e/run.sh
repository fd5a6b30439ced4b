#!/usr/bin/env bash
# End-to-end tests: drive a spawned `kfpd serve` with the official kfp SDK.
#
#   bash tests/e2e/run.sh [extra pytest args]
#
# Environment:
#   KFPD_E2E_VENV     venv to create or reuse (default: ~/.cache/kfpd-e2e-venv)
#   KFPD_E2E_PYTHON   interpreter used to create the venv (default: python3.11, else python3)
#   CARGO_TARGET_DIR  cargo target directory (default: ~/.cache/kfpd-target)
#   KFPD_BIN          use this binary instead of building one
#   KFPD_E2E_SCREENSHOTS  directory for the browser tests' screenshots
#   KFPD_SCHEMATHESIS_VENV  venv for schemathesis (default: ~/.cache/kfpd-schemathesis-venv)
#
# The browser tests (test_ui.py) need Debian's chromium and chromium-driver; run as
# root, this script installs them when missing. Elsewhere they are skipped with a
# message, except under CI=true, where a missing browser fails them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

venv="${KFPD_E2E_VENV:-$HOME/.cache/kfpd-e2e-venv}"
requirements=(
    "kfp==2.15.0"
    "kfp-server-api==2.15.0"
    "pytest==8.3.5"
    "pytest-timeout==2.3.1"
    "requests"
    "PyYAML"
    "grpcio==1.81.1"
    "grpcio-tools==1.81.1"
    "moto[server]==5.2.1"
    "selenium==4.27.1"
)
marker="$venv/.kfpd-e2e-requirements"
wanted="$(printf '%s\n' "${requirements[@]}")"

pick_python() {
    if [[ -n "${KFPD_E2E_PYTHON:-}" ]]; then
        echo "$KFPD_E2E_PYTHON"
    elif command -v python3.11 >/dev/null 2>&1; then
        echo python3.11
    else
        echo python3
    fi
}

if [[ ! -x "$venv/bin/python" ]] || [[ ! -f "$marker" ]] || [[ "$(cat "$marker")" != "$wanted" ]]; then
    python="$(pick_python)"
    version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$version" != "3.11" ]]; then
        echo "run.sh: need Python 3.11 for the venv, $python is $version (set KFPD_E2E_PYTHON)" >&2
        exit 2
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "run.sh: creating venv $venv" >&2
        mkdir -p "$(dirname "$venv")"
        "$python" -m venv "$venv"
    fi
    echo "run.sh: installing ${requirements[*]}" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
    printf '%s\n' "$wanted" >"$marker.tmp"
    mv "$marker.tmp" "$marker"
fi

# Schemathesis (the hostile REST input test) in a venv of its own: its pins
# (hypothesis, jsonschema, requests) stay apart from the kfp SDK's.
st_venv="${KFPD_SCHEMATHESIS_VENV:-$HOME/.cache/kfpd-schemathesis-venv}"
st_requirements=("schemathesis==4.32.5")
st_marker="$st_venv/.kfpd-requirements"
st_wanted="$(printf '%s\n' "${st_requirements[@]}")"
if [[ ! -x "$st_venv/bin/schemathesis" ]] || [[ ! -f "$st_marker" ]] || [[ "$(cat "$st_marker")" != "$st_wanted" ]]; then
    echo "run.sh: installing ${st_requirements[*]} into $st_venv" >&2
    [[ -x "$st_venv/bin/python" ]] || "$(pick_python)" -m venv "$st_venv"
    "$st_venv/bin/python" -m pip install --quiet --disable-pip-version-check "${st_requirements[@]}"
    printf '%s\n' "$st_wanted" >"$st_marker.tmp"
    mv "$st_marker.tmp" "$st_marker"
fi
export KFPD_SCHEMATHESIS_VENV="$st_venv"

# The Rust tests use this venv too (its moto serves S3 on loopback).
if [[ "${KFPD_E2E_SETUP_ONLY:-}" == "1" ]]; then
    exit 0
fi

have_browser() {
    command -v chromedriver >/dev/null 2>&1 &&
        { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
}
if ! have_browser; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing chromium and chromium-driver for the browser tests" >&2
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
            echo "run.sh: could not install chromium and chromium-driver" >&2
        fi
    fi
    if ! have_browser; then
        if [[ "${CI:-}" == "true" ]]; then
            echo "run.sh: CI=true needs chromium and chromium-driver for the browser tests" >&2
            exit 2
        fi
        echo "run.sh: no chromium/chromedriver; the browser tests will be skipped" >&2
    fi
fi

if [[ -z "${KFPD_BIN:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kfpd-target}"
    (cd "$repo" && cargo build --quiet -p kfpd)
    export KFPD_BIN="$CARGO_TARGET_DIR/debug/kfpd"
fi
if [[ ! -x "$KFPD_BIN" ]]; then
    echo "run.sh: $KFPD_BIN is not an executable" >&2
    exit 2
fi

cd "$repo"
status=0
# PYTHONDONTWRITEBYTECODE and pytest.ini's `-p no:cacheprovider` keep the clone clean.
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest tests/e2e -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "run.sh: pytest collected no tests" >&2
    exit 1
fi
exit $status
