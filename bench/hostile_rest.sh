#!/usr/bin/env bash
# Hostile REST input, the long run: schemathesis against /openapi.json of a fresh
# `kfpd serve` (release build, SQLite, --executor none) on loopback, every operation
# but the two event streams and the one call kfpd does not serve, for a time budget.
# Prints cases tried, operations, time, failures and the 5xx kfpd counted; asserts
# nothing. The venvs are the ones tests/e2e/run.sh installs.
#
#   bench/hostile_rest.sh [SECONDS] [MAX_EXAMPLES]   # default 900 s, 200 cases per operation
#   KFPD_BIN=path/to/kfpd bench/hostile_rest.sh ...   # another build (e.g. debug)
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-900}"
examples="${2:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kfpd-target}"
KFPD_E2E_SETUP_ONLY=1 bash tests/e2e/run.sh
if [[ -z "${KFPD_BIN:-}" ]]; then
    cargo build --quiet --release -p kfpd
    export KFPD_BIN="$CARGO_TARGET_DIR/release/kfpd"
fi
export KFPD_SCHEMATHESIS_VENV="${KFPD_SCHEMATHESIS_VENV:-$HOME/.cache/kfpd-schemathesis-venv}"
venv="${KFPD_E2E_VENV:-$HOME/.cache/kfpd-e2e-venv}"
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=tests/e2e "$venv/bin/python" - "$seconds" "$examples" <<'PY'
import pathlib, sys, tempfile, os
import hostile_rest, support

seconds, examples = int(sys.argv[1]), int(sys.argv[2])
with support.running_server(os.environ["KFPD_BIN"]) as server, tempfile.TemporaryDirectory() as scratch:
    result = hostile_rest.run(server.base_url, pathlib.Path(scratch), examples, seconds)
    panics = server.stderr_text(limit=1 << 30).count("panicked")
    summary = result["output"][result["output"].find("SUMMARY"):]
    print(summary, file=sys.stderr)
    print("| schemathesis | value |")
    print("|---|---|")
    print(f"| operations tested | {result['operations']} |")
    print(f"| cases generated | {result['cases']} |")
    print(f"| seconds | {result['seconds']:.0f} |")
    print(f"| schemathesis exit code (0: no failure) | {result['code']} |")
    print(f"| 5xx counted by kfpd | {sum(result['server_errors'].values()):.0f} {result['server_errors'] or ''} |")
    print(f"| panics in kfpd's log | {panics} |")
PY
