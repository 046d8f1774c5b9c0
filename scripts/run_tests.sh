#!/usr/bin/env bash
# Runs every test: the C++ suites through ctest, the Python suites (parity with
# sentence-transformers / HF tokenizer, cross-language gRPC client, deployment files, the
# repository's own citations) with the venv's pytest, the CPU dry run of the GPU check
# (scripts/gpu_check.sh --cpu: the same pipeline at small sizes, about a minute), then a short
# libFuzzer run of every fuzz target (FUZZ_SECONDS each, default 10; 0 = build and replay the
# committed inputs only; scripts/fuzz.sh, clang, torch-free build in build-fuzz/).
#
# No silent skips: a missing binary, package or model fails its Python test
# (tests/python/conftest.py); only tests named *_CUDA may skip, for want of a GPU, in the C++
# suites too (checked below). The run ends with how many tests were skipped, and why, in both the
# C++ and the Python suites.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD:-build}"
export LONGENC_BUILD_DIR="$root/$build"
unset LONGENC_ALLOW_SKIPS
results="$root/$build/test-results"
rm -rf "$results" && mkdir -p "$results/gtest"
# The LONGENC_CUDA=OFF programs that tests/python/test_image.py packages into the CPU image.
export LONGENC_CPU_BUILD_DIR="$root/${BUILD_CPU:-build-cpu}"
status=0
GTEST_OUTPUT="xml:$results/gtest/" ctest --test-dir "$build" --output-on-failure \
  -j "${JOBS:-2}" || status=1
.venv/bin/python -m pytest -q -rs --junitxml="$results/pytest.xml" tests/python || status=1
BUILD="$build" scripts/gpu_check.sh --cpu --out "$results/gpu-check" || status=1
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" scripts/fuzz.sh || status=1

# Skips of the C++ suites (GTEST_SKIP: the *_CUDA tests without a GPU) and of the Python ones,
# from the JUnit XML both write. A skipped test not named *_CUDA fails the run.
.venv/bin/python - "$results" <<'EOF' || status=1
import pathlib, sys, xml.etree.ElementTree as ET
skips, forbidden = [], []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.xml")):
    for case in ET.parse(path).iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            name = f"{case.get('classname')}.{case.get('name')}"
            skips.append(f"  {name}: {skipped.get('message') or (skipped.text or '').strip()}")
            if not case.get("name", "").split("/")[0].split("[")[0].endswith("_CUDA"):
                forbidden.append(name)
print(f"run_tests.sh: {len(skips)} test(s) skipped" + (":" if skips else ""))
print("\n".join(skips))
if forbidden:
    sys.exit("run_tests.sh: only *_CUDA tests may skip; skipped: " + ", ".join(forbidden))
EOF
exit $status
