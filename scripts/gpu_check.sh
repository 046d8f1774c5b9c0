#!/usr/bin/env bash
# The GPU path proven in one command (issue 16 item 7; docs/DEPLOY.md, "Checking a GPU machine").
#
#   scripts/gpu_check.sh          on a machine with one NVIDIA GPU and a fresh clone: bootstrap,
#                                 build, run the *_CUDA tests (none may skip), then print parity with
#                                 the CPU, per-variant fidelity, tokens/s of exact attention and of
#                                 every variant at 512-65536 tokens in fp32/bf16/fp16, and the peak
#                                 device memory (bench/gpu_check.cc)
#   scripts/gpu_check.sh --cpu    the same pipeline on CPU at small sizes, where the *_CUDA tests
#                                 must skip: a dry run that `make test` runs so this script cannot rot
#
# Options: --no-build (use $BUILD as it is), --out DIR (default $BUILD/gpu-check: report.txt,
# results.jsonl, the tests' output). Environment: BUILD (default build), JOBS, GPU_CHECK_SECONDS
# (default 360: the measurements stop there, so tests plus measurements stay within 8 minutes of
# GPU time after the build; rows not measured say so).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD:-build}"
mode=gpu
do_build=1
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --no-build) do_build=0 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out="${out:-$build/gpu-check}"
mkdir -p "$out"
start=$SECONDS
stage_start=$SECONDS
stage() {
  echo "== gpu_check ($mode): $1"
  stage_start=$SECONDS
}
done_stage() { echo "== $1: $((SECONDS - stage_start)) s"; }
fail() { echo "gpu_check.sh: FAILED: $*" >&2; exit 1; }

if [ "$mode" = gpu ]; then
  device=cuda:0
  dtypes=float32,bfloat16,float16
  lengths=512,1024,2048,4096,8192,16384,32768,65536
  # Exact attention at every length: tokens/s of its own and the reference of every fidelity.
  bench_args=(--exact_max=65536 --min_seconds=0.5 --max_reps=5)
else
  device=cpu
  # fp16 is CUDA only: the CPU run shows the backend's refusal instead of a row.
  dtypes=float32,bfloat16,float16
  # 640 > 512: the variants' efficient paths run (i-clustered's starts at 8192).
  lengths=128,640
  bench_args=(--exact_max=640 --parity_max=0 --nowarmup --min_seconds=0 --max_reps=1 --threads=2)
fi

if [ "$do_build" = 1 ]; then
  stage bootstrap
  scripts/bootstrap.sh
  done_stage bootstrap
  stage build
  BUILD="$build" TARGETS="attention_test cuda_backend_test gpu_check_bench longenc-server longenc" \
    scripts/build.sh
  done_stage build
fi
for program in "$build/tests/attention_test" "$build/tests/cuda_backend_test" \
               "$build/bin/gpu_check_bench" "$build/bin/longenc-server" "$build/bin/longenc"; do
  [ -x "$program" ] || fail "$program is missing (run without --no-build)"
done
gpu_start=$SECONDS

stage device
if [ "$mode" = gpu ]; then
  command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: no NVIDIA driver on this machine"
  nvidia-smi -L || fail "nvidia-smi lists no GPU"
  .venv/bin/python -c 'import torch, sys
if not torch.cuda.is_available(): sys.exit("LibTorch sees no CUDA device (driver too old for torch %s?)" % torch.__version__)
print("LibTorch %s, CUDA %s: %s" % (torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0)))' \
    || fail "CUDA is not usable from LibTorch"
else
  echo "CPU dry run: $(nproc) cores; the *_CUDA tests must skip"
fi
done_stage device

# The *_CUDA tests: on a GPU every one must run and pass; on CPU every one must skip (and does so
# visibly, with its reason).
stage "*_CUDA tests"
ran=0; skipped=0
for test in attention_test cuda_backend_test; do
  log="$out/$test.CUDA.log"
  if ! LONGENC_MODEL_DIR="${LONGENC_MODEL_DIR:-$root/models/all-MiniLM-L6-v2}" \
       "$build/tests/$test" --gtest_filter='*_CUDA' >"$log" 2>&1; then
    cat "$log"; fail "$test: a *_CUDA test failed"
  fi
  # One line per test as it ends ("[  SKIPPED ] Suite.Name (0 ms)"), with the reason above it.
  r=$(grep -cE '^\[       OK \] .* \([0-9]+ ms\)$' "$log" || true)
  s=$(grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$log" || true)
  echo "$test: $r passed, $s skipped"
  grep -B1 -E '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$log" | grep -v '^--$' || true
  ran=$((ran + r)); skipped=$((skipped + s))
done
# The real server on the device: the device-memory gauges are fed (tests/python/test_cuda_server.py).
log="$out/test_cuda_server.CUDA.log"
LONGENC_BUILD_DIR="$(realpath "$build")" .venv/bin/python -m pytest -q -rs tests/python/test_cuda_server.py \
  >"$log" 2>&1 || { cat "$log"; fail "tests/python/test_cuda_server.py failed"; }
r=$(grep -oE '[0-9]+ passed' "$log" | grep -oE '[0-9]+' || true)
s=$(grep -oE '[0-9]+ skipped' "$log" | grep -oE '[0-9]+' || true)
echo "test_cuda_server.py: ${r:-0} passed, ${s:-0} skipped"
grep '^SKIPPED' "$log" || true
ran=$((ran + ${r:-0})); skipped=$((skipped + ${s:-0}))
[ $((ran + skipped)) -gt 0 ] || fail "no *_CUDA test found"
if [ "$mode" = gpu ] && [ "$skipped" -gt 0 ]; then
  fail "$skipped *_CUDA test(s) skipped on a GPU machine (see $out/*.CUDA.log)"
fi
if [ "$mode" = cpu ] && [ "$ran" -gt 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  fail "$ran *_CUDA test(s) ran without a GPU"
fi
echo "*_CUDA tests: $ran passed, $skipped skipped"
done_stage "*_CUDA tests"

stage "documents"
.venv/bin/python - "$lengths" "$out/ids.json" <<'EOF'
import json, sys
sys.path.insert(0, "bench")
import corpus  # real text: Debian's linux-doc, tokenized like the model's tokenizer
lengths = [int(n) for n in sys.argv[1].split(",")]
docs = corpus.documents()
json.dump({str(n): corpus.concatenated_ids(n, seed=1, docs=docs) for n in lengths},
          open(sys.argv[2], "w"))
print("documents of", ", ".join(map(str, lengths)), "tokens")
EOF
done_stage documents

stage "measurements"
status=0
"$build/bin/gpu_check_bench" --device="$device" --ids="$out/ids.json" --dtypes="$dtypes" \
  --lengths="$lengths" --max_seconds="${GPU_CHECK_SECONDS:-360}" "${bench_args[@]}" \
  --out="$out/results.jsonl" | tee "$out/report.txt" || status=1
done_stage measurements

echo "gpu_check.sh ($mode): $([ $status = 0 ] && echo OK || echo FAILED) in $((SECONDS - start)) s," \
  "$((SECONDS - gpu_start)) s after the build; report in $out/report.txt"
exit $status
