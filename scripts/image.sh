#!/usr/bin/env bash
# Builds the longenc container image from ./Dockerfile (`make image`, docs/DEPLOY.md).
#
#   scripts/image.sh [--variant cpu|gpu] [--tag NAME]
#       The whole Dockerfile: bootstrap, build from source, staging, runtime stage.
#       Default tag longenc:<variant>.
#   scripts/image.sh --from-build DIR [--tag NAME]
#       Fast path (the image test): runs the Dockerfile's staging step on DIR, a local
#       LONGENC_CUDA=OFF build (`make build-cpu`), and builds the Dockerfile's runtime stage on
#       it, with a build stage that only holds the staged files. Default tag longenc:cpu-local.
#
# Engine: docker when a Docker daemon answers, else podman. Podman runs with runc, host
# networking and lowered ulimits, the settings that work on a host (or container) where crun
# cannot raise RLIMIT_NOFILE; $PODMAN replaces the engine command (PODMAN=podman: crun). Images
# are built with --format docker so that podman keeps the HEALTHCHECK.
# Base images: BUILD_BASE / RUNTIME_BASE if set; else debian:bookworm(-slim) when present or
# pullable; else made here with mmdebstrap (scripts/image_base.sh) as localhost/debian:....
# pip behind a TLS-intercepting proxy: the host's CA bundle is passed as the build secret
# pip_cert (mounted for the pip steps only, never stored in the image).
# Prints the image's size and the build time at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '[image] %s\n' "$*" >&2; }

variant="${VARIANT:-cpu}" tag="" from_build=""
while (($#)); do
  case "$1" in
    --variant) variant="$2"; shift 2 ;;
    --variant=*) variant="${1#*=}"; shift ;;
    --tag) tag="$2"; shift 2 ;;
    --tag=*) tag="${1#*=}"; shift ;;
    --from-build) from_build="$2"; shift 2 ;;
    --from-build=*) from_build="${1#*=}"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$variant" in cpu|gpu) ;; *) echo "image.sh: --variant cpu or gpu, not $variant" >&2; exit 2 ;; esac
if [ -n "$from_build" ]; then
  [ "$variant" = cpu ] || { echo "image.sh: --from-build packages a CPU build only" >&2; exit 2; }
  tag="${tag:-longenc:cpu-local}"
else
  tag="${tag:-longenc:$variant}"
fi

# The engine and its flags.
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=(docker) build_flags=()
elif command -v podman >/dev/null; then
  if [ -n "${PODMAN:-}" ]; then
    read -r -a engine <<< "$PODMAN"
  else
    engine=(podman)
    command -v runc >/dev/null && engine+=(--runtime runc)
  fi
  build_flags=(--format docker --network=host --ulimit nofile=1024:1024 --ulimit nproc=1000:1000)
else
  echo "image.sh: no container engine: install podman (scripts/bootstrap.sh does) or docker" >&2
  exit 1
fi

image_exists() { "${engine[@]}" image inspect "$1" >/dev/null 2>&1; }

# The base image for `FROM $default`: present, pulled, or made locally. Prints its name.
base_image() {
  local default="$1" flavour="$2" local_name="localhost/$1"
  if image_exists "$default"; then echo "$default"; return; fi
  if image_exists "$local_name"; then echo "$local_name"; return; fi
  if timeout 300 "${engine[@]}" pull -q "$default" >/dev/null 2>&1; then echo "$default"; return; fi
  say "no registry answers for $default: making $local_name with mmdebstrap"
  scripts/image_base.sh "${engine[0]}" "$local_name" $flavour >&2
  echo "$local_name"
}

args=(--build-arg "VARIANT=$variant")
runtime_base="${RUNTIME_BASE:-$(base_image debian:bookworm-slim slim)}"
args+=(--build-arg "RUNTIME_BASE=$runtime_base")
start=$SECONDS
if [ -n "$from_build" ]; then
  from_build="$(cd "$from_build" && pwd)"
  for program in longenc-server longenc; do
    [ -x "$from_build/bin/$program" ] || { echo "image.sh: $from_build/bin/$program missing (make build-cpu)" >&2; exit 1; }
  done
  if readelf -d "$from_build/bin/longenc-server" | grep -q 'libtorch_cuda'; then
    echo "image.sh: $from_build links libtorch_cuda; the CPU image wants a LONGENC_CUDA=OFF build" >&2
    exit 1
  fi
  context="$from_build/image-context"
  rm -rf "$context"
  mkdir -p "$context/deploy"
  # The Dockerfile's staging RUN, as the build stage runs it (a shell continues its lines).
  staging="$(awk '/^RUN stage="\$\{STAGE:-\/staging\}"/ {p = 1} p {print; if ($0 !~ /\\$/) exit}' \
             Dockerfile | sed '1s/^RUN //')"
  [ -n "$staging" ] || { echo "image.sh: the staging RUN is not in the Dockerfile" >&2; exit 1; }
  # Hard links when the build and .venv share a file system: no 700 MB copy.
  if ! STAGE="$context/staging" BUILD="$from_build" VARIANT=cpu COPY_CMD="cp -L -l" \
       bash -o pipefail -c "$staging" 2>/dev/null; then
    rm -rf "$context/staging"
    STAGE="$context/staging" BUILD="$from_build" VARIANT=cpu COPY_CMD="cp -L" \
      bash -o pipefail -c "$staging"
  fi
  # The Dockerfile's global ARGs and its runtime stage, verbatim, after a build stage that
  # holds the staged files. The runtime stage's own COPY sources come along.
  {
    awk '/^FROM / {exit} {print}' Dockerfile
    printf 'FROM scratch AS build\nCOPY staging/ /staging/\n\n'
    awk '/^FROM \$\{RUNTIME_BASE\} AS runtime$/ {p = 1} p' Dockerfile
  } > "$context/Dockerfile"
  grep -q '^FROM \${RUNTIME_BASE} AS runtime$' "$context/Dockerfile" \
    || { echo "image.sh: no runtime stage in the Dockerfile" >&2; exit 1; }
  cp deploy/server.flags deploy/healthcheck.sh "$context/deploy/"
  say "building $tag from the runtime stage of ./Dockerfile on $from_build (${engine[*]})"
  "${engine[@]}" build "${build_flags[@]}" "${args[@]}" -t "$tag" -f "$context/Dockerfile" "$context"
else
  build_base="${BUILD_BASE:-$(base_image debian:bookworm "")}"
  args+=(--build-arg "BUILD_BASE=$build_base" --build-arg "JOBS=${JOBS:-$(nproc)}")
  ca=/etc/ssl/certs/ca-certificates.crt
  [ -s "$ca" ] && args+=(--secret "id=pip_cert,src=$ca")
  say "building $tag from ./Dockerfile, VARIANT=$variant (${engine[*]})"
  "${engine[@]}" build "${build_flags[@]}" "${args[@]}" -t "$tag" .
fi
size="$("${engine[@]}" image inspect --format '{{.Size}}' "$tag")"
say "$tag: $((size / 1000000)) MB ($size bytes), built in $((SECONDS - start)) s"
