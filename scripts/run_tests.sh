#!/usr/bin/env bash
# Runs every test: the C++ suites through ctest, the Python suites (parity with
# sentence-transformers / HF tokenizer, cross-language gRPC client) with the venv's pytest, then
# a short libFuzzer run of every fuzz target (FUZZ_SECONDS each, default 10; 0 = build and
# replay the committed inputs only; scripts/fuzz.sh, clang, torch-free build in build-fuzz/).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD:-build}"
export LONGENC_BUILD_DIR="$root/$build"
status=0
ctest --test-dir "$build" --output-on-failure -j "${JOBS:-2}" || status=1
.venv/bin/python -m pytest -q tests/python || status=1
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" scripts/fuzz.sh || status=1
exit $status
