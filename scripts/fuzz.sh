#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (torch-free, ASan + UBSan) into
# build-fuzz/ and runs each for FUZZ_SECONDS (default 30); exits non-zero if any target finds a
# crash, a leak, a timeout or an out-of-memory. A crashing input is left in
# build-fuzz/fuzz-artifacts/<target>/; copy it to tests/fuzz/<target>/regressions/ (the
# fuzz_<target>_replay tests then replay it in every build) and fix the bug.
#
# Usage: scripts/fuzz.sh [target ...]   targets: tokenizer tokenizer_files tokenizer_json
#        safetensors config embed_request (default: all)
# Environment: FUZZ_SECONDS (per target; 0 = build and replay only), FUZZ_BUILD (build dir),
#              JOBS (build parallelism),
#              FUZZ_ARGS (extra libFuzzer flags, e.g. "-jobs=2 -workers=2").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${FUZZ_BUILD:-build-fuzz}"
seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(tokenizer tokenizer_files tokenizer_json safetensors config embed_request); fi

# The libraries get coverage and sanitizer instrumentation (fuzzer-no-link); the fuzz binaries
# themselves add -fsanitize=fuzzer in tests/fuzz/CMakeLists.txt.
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S "$root" -B "$build" -DLONGENC_BUILD_MODEL=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ \
  "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link $sanitize" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=("${t}_fuzzer" "fuzz_${t}_replay"); done
cmake --build "$build" -j "${JOBS:-2}" --target "${build_targets[@]}"

# The committed corpus and regressions first, under the sanitizers; a failing replay (a known
# bug not fixed yet) fails the run but does not stop the fuzzing.
status=0
ctest --test-dir "$build" --output-on-failure -L fuzz \
  -R "^fuzz_($(IFS='|'; echo "${targets[*]}"))_replay$" || status=1

# FUZZ_SECONDS=0: build and replay only (libFuzzer would read 0 as "no time limit").
if [[ "$seconds" == 0 ]]; then exit $status; fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in "${targets[@]}"; do
  work="$build/fuzz-corpus/$t"           # inputs found now (not committed)
  artifacts="$build/fuzz-artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  dict=()
  if [[ -f tests/fuzz/$t/$t.dict ]]; then dict=("-dict=tests/fuzz/$t/$t.dict"); fi
  echo "== fuzzing $t for ${seconds}s"
  # New inputs go to the first directory; the committed seeds are only read.
  if ! "$build/fuzz/${t}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" \
      ${FUZZ_ARGS:-} "$work" "tests/fuzz/$t/corpus" >"$build/fuzz-$t.log" 2>&1; then
    status=1
    echo "!! $t: the fuzzer failed; last lines of $build/fuzz-$t.log:"
    tail -n 40 "$build/fuzz-$t.log"
    echo "!! crashing inputs in $artifacts:"; ls -l "$artifacts"
  else
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov:" \
      "$build/fuzz-$t.log" | tail -n 4
  fi
done
exit $status
