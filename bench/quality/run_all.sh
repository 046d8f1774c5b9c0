#!/usr/bin/env bash
# The exact commands behind docs/QUALITY.md. On the day they ran in parallel lanes (separate
# --out files); run here in sequence they encode only what is not cached in
# bench/results/quality.raw/cache/ and leave the merged results in passkey.json,
# doc_retrieval.json and fidelity*.json, whose tables docs/QUALITY.md shows.
# Usage: bench/quality/run_all.sh [stage ...]
#   stages: calibrate fidelity passkey retrieval late plot (default: all, in that order)
# LONGENC_ENCODE=path picks the encoder (default build/bin/longenc-encode), LONGENC_CALIBRATE
# the calibration command (default: longenc-calibrate beside the encoder).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
Q=bench/quality
OUT=bench/results/quality.raw
BIN=(${LONGENC_ENCODE:+--binary "$LONGENC_ENCODE"})
CALIBRATE=${LONGENC_CALIBRATE:-$(dirname "${LONGENC_ENCODE:-build/bin/longenc-encode}")/longenc-calibrate}
# Calibrated CAST (stage calibrate): 128 surrogates/head, clusters of 32 tokens (the best
# k-means-initialised setting of the docs/QUALITY.md sweep), 10 Adam steps per layer.
CAST_OPTS="clusters=128,kappa=32"
CAST_FILE="$PWD/$OUT/cast_c128k32.safetensors"
CAST="cast+surrogates=$CAST_FILE"
mkdir -p "$OUT"
ICL="iclustered+clusters=256;topk=64"   # best i-clustered setting of the fidelity sweep
MODES="full/interpolate,full/grouped,full/recurrent,full/interpolate:logscale,full/grouped:logscale,full/recurrent:logscale"
BASE="truncate256,truncate512,chunk"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(calibrate fidelity passkey retrieval late plot)

for stage in "${stages[@]}"; do
  case "$stage" in
    calibrate)
      # Calibration text: linux-doc files the harness never evaluates on (calibration_docs.py).
      $PY $Q/calibration_docs.py --count 3 --length 1024 > "$OUT/calib1k.jsonl"
      "$CALIBRATE" --input="$OUT/calib1k.jsonl" --output="$CAST_FILE" --attention_options=$CAST_OPTS \
        --steps=10 --learning_rate=0.05 --threads=2 > "$OUT/cast_c128k32.json"
      "$CALIBRATE" --input="$OUT/calib1k.jsonl" --output="$OUT/cast_c128k32_kmeans.safetensors" \
        --attention_options=$CAST_OPTS --steps=0 --threads=2 > "$OUT/cast_c128k32_kmeans.json"
      # k-means-only sweep of (clusters, kappa) that chose CAST_OPTS (2 documents of 2,048).
      $PY $Q/calibration_docs.py --count 2 --length 2048 > "$OUT/calib2k.jsonl"
      for cfg in clusters=64,kappa=256 clusters=64,kappa=64 clusters=32,kappa=128 clusters=128,kappa=32 clusters=128,kappa=64; do
        echo "== $cfg"
        "$CALIBRATE" --input="$OUT/calib2k.jsonl" --output="$OUT/sweep.safetensors" --steps=0 \
          --threads=2 --attention_options=$cfg 2>&1 >/dev/null | grep done
      done > "$OUT/cast_kmeans_sweep.md" ;;
    fidelity)
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048,8192 --docs 3,2,1 \
        --sweep 2048:16,25,64:16,32,64 --sweep 8192:25,64:32,128 > "$OUT/fidelity.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 2048 --docs 2 --variants iclustered \
        --sweep 2048:128,256:64 --out fidelity_more_clusters.json > "$OUT/fidelity_more_clusters.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048 --docs 3,2 --variants iclustered,cast,yoso \
        --out fidelity_newbinary.json > "$OUT/fidelity_newbinary.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 8192 --docs 1 --variants "iclustered:clusters=256;topk=64" \
        --out fidelity_8k_c256.json > "$OUT/fidelity_8k_c256.md"
      # Calibrated CAST, its baselines, YOSO-E, the defaults, 32k (one document).
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048,8192 --docs 3,2,1 \
        --variants "cast:surrogates=$CAST_FILE" --out fidelity_cast.json > "$OUT/fidelity_cast.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 2048,8192 --docs 2,1 \
        --variants "cast:surrogates=$CAST_FILE;kappa=64" --out fidelity_cast_kappa64.json > "$OUT/fidelity_cast_kappa64.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048,8192 --docs 3,2,1 \
        --variants "cast:surrogates=$PWD/$OUT/cast_c128k32_kmeans.safetensors,cast:clusters=128;kappa=32" \
        --out fidelity_cast_baselines.json > "$OUT/fidelity_cast_baselines.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048 --docs 3,2 --variants "yoso:expectation=1" \
        --out fidelity_yoso_e.json > "$OUT/fidelity_yoso_e.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 512,2048,8192 --docs 3,2,1 --variants iclustered,clustered,yoso \
        --out fidelity_defaults.json > "$OUT/fidelity_defaults.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 32768 --docs 1 --variants "cast:surrogates=$CAST_FILE" \
        --out fidelity_cast_32k.json > "$OUT/fidelity_cast_32k.md"
      $PY $Q/fidelity.py "${BIN[@]}" --lengths 32768 --docs 1 --variants iclustered \
        --out fidelity_defaults_32k.json > "$OUT/fidelity_defaults_32k.md" ;;
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
        --methods "$BASE,full/grouped:logscale,$ICL/grouped:logscale"
      # i-clustered with its defaults and calibrated CAST, default position mode.
      $PY $Q/passkey.py "${BIN[@]}" --lengths 256,512,1024,2048,4096,8192 \
        --candidates 256:20,512:20,1024:10,2048:10,4096:10,8192:5 --methods "iclustered/grouped:logscale"
      $PY $Q/passkey.py "${BIN[@]}" --lengths 256,512,1024,2048 --candidates 256:20,512:20,1024:10,2048:10 \
        --methods "$CAST/grouped:logscale"
      $PY $Q/passkey.py --report > "$OUT/passkey.md" ;;
    retrieval)
      for d in 0 100; do
        $PY $Q/doc_retrieval.py "${BIN[@]}" --count 16 --min_tokens 2048 --max_tokens 3072 --distractors $d \
          --methods "$BASE,full/interpolate,full/grouped,full/interpolate:logscale,full/grouped:logscale,iclustered+clusters=64;topk=64/interpolate,$ICL/grouped:logscale"
      done > "$OUT/doc_retrieval.md"
      # i-clustered defaults and calibrated CAST, with the 100 distractors only.
      $PY $Q/doc_retrieval.py "${BIN[@]}" --count 16 --min_tokens 2048 --max_tokens 3072 --distractors 100 \
        --methods "iclustered/grouped:logscale,$CAST/grouped:logscale" > "$OUT/doc_retrieval_defaults.md" ;;
    late)
      # Late vs naive chunking through longenc-server (build/bin; LONGENC_ENCODE is not used).
      $PY $Q/late_chunking.py --count 20 --min_tokens 512 --max_tokens 4096 > "$OUT/late_chunking.md"
      $PY $Q/late_chunking.py --count 10 --min_tokens 4096 --max_tokens 16384 \
        --out late_chunking_long.json > "$OUT/late_chunking_long.md"
      $PY $Q/late_chunking.py --count 10 --min_tokens 4096 --max_tokens 16384 --attention full \
        --position_mode chunk --out late_chunking_long_chunkmode.json > "$OUT/late_chunking_long_chunkmode.md" ;;
    plot)
      $PY $Q/plot.py ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
