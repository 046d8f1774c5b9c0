#!/usr/bin/env bash
# Configures (once) and builds longenc into $BUILD (default build/). LibTorch comes from the
# project venv's torch wheel; ccache keeps rebuilds cheap.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD:-build}"
jobs="${JOBS:-$(nproc)}"
# Relative paths in ccache keys: a fresh clone elsewhere reuses this machine's cache.
export CCACHE_BASEDIR="$root"
# -g builds hash the working directory by default; without it, build/ and build-cpu/ (the same
# depth, so the same relative paths) share objects whose preprocessed source is the same.
export CCACHE_NOHASHDIR=1
if [ ! -f "$build/CMakeCache.txt" ]; then
  torch_prefix="$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  cmake -S . -B "$build" -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DPython3_EXECUTABLE="$root/.venv/bin/python" ${CMAKE_ARGS:-}
fi
# TARGETS: only these targets (space-separated); all by default.
cmake --build "$build" -j "$jobs" ${TARGETS:+--target $TARGETS}
