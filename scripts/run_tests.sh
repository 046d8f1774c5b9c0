#!/usr/bin/env bash
# Runs every test: the C++ suites through ctest, then the Python suites (parity with
# sentence-transformers / HF tokenizer, cross-language gRPC client) with the venv's pytest.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD:-build}"
export LONGENC_BUILD_DIR="$root/$build"
status=0
ctest --test-dir "$build" --output-on-failure -j "${JOBS:-2}" || status=1
.venv/bin/python -m pytest -q tests/python || status=1
exit $status
