#!/usr/bin/env bash
# The exact commands behind docs/QUALITY.md. On the day they ran in parallel lanes (separate
# --out files); run here in sequence they encode only what is not cached in
# bench/results/quality.raw/cache/ and leave the merged results in passkey.json,
# doc_retrieval.json and fidelity*.json, whose tables docs/QUALITY.md shows.
# Usage: bench/quality/run_all.sh [stage ...]   stages: fidelity passkey retrieval plot
# LONGENC_ENCODE=path picks the binary (default build/bin/longenc-encode).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
Q=bench/quality
OUT=bench/results/quality.raw
BIN=(${LONGENC_ENCODE:+--binary "$LONGENC_ENCODE"})
mkdir -p "$OUT"
ICL="iclustered+clusters=256;topk=64"   # best i-clustered setting of the fidelity sweep
MODES="full/interpolate,full/grouped,full/recurrent,full/interpolate:logscale,full/grouped:logscale,full/recurrent:logscale"
BASE="truncate256,truncate512,chunk"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(fidelity passkey retrieval plot)

for stage in "${stages[@]}"; do
  case "$stage" in
    fidelity)
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048,8192 --docs 3,2,1 \
        --sweep 2048:16,25,64:16,32,64 --sweep 8192:25,64:32,128 > "$OUT/fidelity.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 2048 --docs 2 --variants iclustered \
        --sweep 2048:128,256:64 --out fidelity_more_clusters.json > "$OUT/fidelity_more_clusters.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048 --docs 3,2 --variants iclustered,cast,yoso \
        --out fidelity_newbinary.json > "$OUT/fidelity_newbinary.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 8192 --docs 1 --variants "iclustered:clusters=256;topk=64" \
        --out fidelity_8k_c256.json > "$OUT/fidelity_8k_c256.md" ;;
    passkey)
      $PY $Q/passkey.py "${BIN[@]}" --lengths 256,512 --candidates 256:20,512:20 --methods "$BASE,$MODES"
      $PY $Q/passkey.py "${BIN[@]}" --lengths 1024,2048 --candidates 1024:10,2048:10 --methods "$BASE,$MODES"
      $PY $Q/passkey.py "${BIN[@]}" --lengths 4096 --candidates 4096:10 \
        --methods "$BASE,full/interpolate,full/grouped,full/interpolate:logscale,full/grouped:logscale"
      $PY $Q/passkey.py "${BIN[@]}" --lengths 256,512,1024,2048,4096 \
        --candidates 256:20,512:20,1024:10,2048:10,4096:10 --methods "$ICL/grouped:logscale"
      $PY $Q/passkey.py "${BIN[@]}" --lengths 8192 --candidates 8192:5 \
        --methods "$BASE,$ICL/grouped:logscale,full/grouped:logscale,full/interpolate"
      $PY $Q/passkey.py "${BIN[@]}" --lengths 16384 --candidates 16384:5 \
        --methods "$BASE,full/grouped:logscale,$ICL/grouped:logscale" > "$OUT/passkey.md" ;;
    retrieval)
      for d in 0 100; do
        $PY $Q/doc_retrieval.py "${BIN[@]}" --count 16 --min_tokens 2048 --max_tokens 3072 --distractors $d \
          --methods "$BASE,full/interpolate,full/grouped,full/interpolate:logscale,full/grouped:logscale,iclustered+clusters=64;topk=64/interpolate,$ICL/grouped:logscale"
      done > "$OUT/doc_retrieval.md" ;;
    plot)
      $PY $Q/plot.py ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
