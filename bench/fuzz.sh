#!/usr/bin/env bash
# Hostile pipelines and archives, the long run: the fuzz tests of
# crates/kfpd/tests/fuzz.rs (package reader, IR validator, CEL in process; uploads,
# filters and page tokens through the real binary) in a release build for SECONDS
# each, from SEED. Prints the inputs tried, the time and the peak memory; the tests
# fail on a panic, a hang, a refusal without a 4xx naming the problem, or anything
# refused being stored.
#
#   bench/fuzz.sh [SECONDS] [SEED]   # default 300 s, seed 1
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kfpd-target}"
export KFPD_FUZZ_SECONDS="${1:-300}"
export KFPD_FUZZ_SEED="${2:-1}"
cargo test --quiet --release -p kfpd --test fuzz -- --nocapture --test-threads 1 2>&1 |
    grep -E '^fuzz |test result|panicked|FAILED'
