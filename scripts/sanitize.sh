#!/usr/bin/env bash
# Sanitizer builds of the C++ tests, run with ctest (`make test-sanitize`).
#   asan: AddressSanitizer + UndefinedBehaviorSanitizer (leaks included) over every C++ test of
#         the build in build-asan/; torch-free by default. SANITIZE_MODEL=ON builds in
#         build-asan-model/ with the LibTorch layer (model, attention and integration tests);
#         LibTorch itself is not instrumented.
#   tsan: ThreadSanitizer over the batcher and service tests in build-tsan/ (torch-free).
# Usage: scripts/sanitize.sh [asan] [tsan]   (default: both). Prints the time of each phase.
# Environment: JOBS (build parallelism, default 2), SANITIZE_MODEL (OFF|ON), SANITIZE_CXX
#              (compiler, default g++; clang++ works too), ASAN_OPTIONS / UBSAN_OPTIONS /
#              TSAN_OPTIONS (replace the defaults below).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${JOBS:-2}"
cxx="${SANITIZE_CXX:-g++}"
model="${SANITIZE_MODEL:-OFF}"
modes=("$@")
if [[ ${#modes[@]} -eq 0 ]]; then modes=(asan tsan); fi

prefix=()
if [[ "$model" == ON ]]; then
  prefix=("-DCMAKE_PREFIX_PATH=$(.venv/bin/python -c 'import torch;print(torch.utils.cmake_prefix_path)')")
fi

quiet() { "$@" >/dev/null; }

# Runs "$@" and prints how long it took, labelled $1.
timed() {
  local label="$1"; shift
  local start=$SECONDS
  "$@"; local rc=$?
  echo "== $label: $((SECONDS - start)) s (exit $rc)"
  return $rc
}

status=0
for mode in "${modes[@]}"; do
  case "$mode" in
    asan)
      dir=build-asan
      # The LibTorch build has its own directory, so switching SANITIZE_MODEL rebuilds nothing.
      [[ "$model" == ON ]] && dir=build-asan-model
      flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
      targets=(all)
      filter=()
      link_extra=""
      ;;
    tsan)
      dir=build-tsan
      flags="-fsanitize=thread -fno-omit-frame-pointer"
      # Debian's Abseil is not built with TSan: without the shim's annotations every
      # absl::Mutex-guarded access is a false race (tests/fuzz/sanitizers/absl_tsan_shim.cc).
      mkdir -p "$dir"
      "$cxx" -std=c++17 -O1 -g -fPIC $flags -c tests/fuzz/sanitizers/absl_tsan_shim.cc \
        -o "$dir/absl_tsan_shim.o" || { status=1; continue; }
      link_extra="-rdynamic $root/$dir/absl_tsan_shim.o -ldl"
      targets=(batcher_test service_test)
      filter=(-R '^(batcher_test|service_test)$')
      ;;
    *) echo "unknown mode '$mode' (asan, tsan)"; exit 2 ;;
  esac
  buildmodel=OFF
  [[ "$mode" == asan ]] && buildmodel="$model"
  timed "$mode configure" quiet cmake -S "$root" -B "$dir" "${prefix[@]}" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLONGENC_BUILD_MODEL="$buildmodel" -DLONGENC_TCMALLOC=OFF \
    "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=$flags $link_extra" || { status=1; continue; }
  # -k: one target that fails to build (reported, exit 1) does not keep the others from testing.
  timed "$mode build" cmake --build "$dir" -j "$jobs" --target "${targets[@]}" -- -k || status=1
  # Every report is fatal, leaks included; with SANITIZE_MODEL=ON LibTorch needs no exception
  # (docs/RELIABILITY.md, "Sanitizers").
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/fuzz/sanitizers/tsan.supp}"
  timed "$mode tests" ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 1800 \
    "${filter[@]}" || status=1
done
exit $status
