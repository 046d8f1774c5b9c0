#!/usr/bin/env bash
# The exact commands behind docs/QUALITY.md, in the order they were run (cheapest first).
# Results accumulate in bench/results/quality.raw/ (embeddings cached per method and document),
# so re-running prints the tables again and encodes nothing already cached.
# Usage: bench/quality/run_all.sh [stage ...]   stages: fidelity passkey retrieval long plot
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
Q=bench/quality
OUT=bench/results/quality.raw
mkdir -p "$OUT"
ICL_BEST="iclustered+clusters=64;topk=64"   # best i-clustered setting of the fidelity sweep
stages=("${@:-fidelity passkey retrieval long plot}")

for stage in ${stages[*]}; do
  case "$stage" in
    fidelity)
      $PY $Q/fidelity.py --lengths 512,2048,8192 --docs 3,2,1 \
        --sweep 2048:16,25,64:16,32,64 --sweep 8192:25,64:32,128 > "$OUT/fidelity.md" ;;
    passkey)
      $PY $Q/passkey.py --lengths 256,512 --candidates 256:20,512:20 \
        --methods truncate256,truncate512,chunk,full/interpolate,full/grouped,full/recurrent,full/interpolate:logscale,full/grouped:logscale,full/recurrent:logscale
      $PY $Q/passkey.py --lengths 1024,2048 --candidates 1024:10,2048:10 \
        --methods truncate256,truncate512,chunk,full/interpolate,full/grouped,full/recurrent,full/interpolate:logscale,full/grouped:logscale,full/recurrent:logscale
      $PY $Q/passkey.py --lengths 256,512,1024,2048,4096 \
        --candidates 256:20,512:20,1024:10,2048:10,4096:10 \
        --methods truncate256,truncate512,chunk,full/interpolate,full/grouped,full/interpolate:logscale,"$ICL_BEST/interpolate" ;;
    retrieval)
      $PY $Q/doc_retrieval.py --count 16 --min_tokens 2048 --max_tokens 3072 \
        --methods truncate256,truncate512,chunk,full/interpolate,full/grouped,full/interpolate:logscale,full/grouped:logscale,"$ICL_BEST/interpolate" ;;
    long)
      $PY $Q/passkey.py --lengths 8192 --candidates 8192:5 \
        --methods truncate256,truncate512,chunk,full/interpolate,"$ICL_BEST/interpolate"
      $PY $Q/fidelity.py --lengths 32768 --docs 1 --variants iclustered,clustered \
        --out fidelity_32k.json > "$OUT/fidelity_32k.md" ;;
    plot)
      $PY $Q/passkey.py --report > "$OUT/passkey.md"
      $PY $Q/doc_retrieval.py --report > "$OUT/doc_retrieval.md"
      $PY $Q/plot.py ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
