# syntax=docker/dockerfile:1.7
# longenc container image: longenc-server + the `longenc` CLI + the default model.
#
#   make image                       # = scripts/image.sh: podman or docker, base images made
#                                    #   locally when no registry is reachable (docs/DEPLOY.md)
#   docker build -t longenc:cpu .                          # CPU image (no CUDA library)
#   docker build -t longenc:gpu --build-arg VARIANT=gpu .  # GPU image (CUDA 13.0 runtime)
#   docker run -p 50051:50051 -p 9464:9464 longenc:cpu
#   docker run --gpus all -p 50051:50051 longenc:gpu --device=cuda
#
# The build stage runs the same scripts that `make test` runs: scripts/bootstrap.sh (Debian
# packages, .venv with the pinned torch wheel, exported model) and scripts/build.sh. The runtime
# stage gets only the binaries, the shared libraries they load and the model. docs/DEPLOY.md
# explains every choice; tests/python/test_deploy_dockerfile.py checks this file and runs its
# staging step against a local build, and tests/python/test_image.py builds the runtime stage
# with podman and runs the image.

# cpu or gpu. Both runtime images are Debian 12: the binaries link Debian's gRPC, protobuf and
# Abseil, so the runtime must be the distribution they were built on. The nvidia/cuda images are
# Ubuntu/UBI and would not match. The GPU image instead carries the CUDA 13.0 user-space
# libraries from the nvidia-* wheels that the pinned torch wheel depends on (the versions torch
# was tested with). The NVIDIA container toolkit mounts the driver (libcuda.so) at run time.
# The CPU image's server is built with LONGENC_CUDA=OFF: it links libtorch_cpu only.
ARG VARIANT=cpu
ARG BUILD_BASE=debian:bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${BUILD_BASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# Dependencies first: this layer is rebuilt only when scripts/ change, not on source edits.
# The optional build secret `pip_cert` is a CA bundle for pip (a TLS-intercepting proxy's CA;
# scripts/image.sh passes the host's trust store when it has one). It is mounted for this step
# only and never stored in the image.
COPY scripts/ scripts/
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && scripts/bootstrap.sh

# Declared after the bootstrap so that both variants share its layer.
ARG VARIANT
ARG JOBS=4
# 1 = also run the test suite (scripts/run_tests.sh, what `make test` runs) in the build; the
# image test is left out, as it needs a container engine.
ARG RUN_TESTS=0
# GPU only: the CUDA 13.0 toolkit that find_package(Torch) needs at configure time (a CUDA
# torch wheel wants nvcc and the headers). Assembled from PyPI: the nvidia-* wheels already in
# .venv (headers and libraries of the versions torch pins) plus nvcc, crt, nvvm and cccl of the
# same release. Only the build stage has it; the CPU build (LONGENC_CUDA=OFF) needs none.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=pip_cert,required=false \
    if [ "${VARIANT}" != gpu ]; then exit 0; fi \
    && if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && .venv/bin/pip install -q --disable-pip-version-check --no-deps --target /opt/cuda-wheels \
       nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
       nvidia-cuda-cccl==13.0.85 \
    && mkdir -p /usr/local/cuda-13.0 \
    && for d in "$site"/nvidia/*/ /opt/cuda-wheels/nvidia/*/; do cp -a "$d". /usr/local/cuda-13.0/; done \
    && ln -sfn lib /usr/local/cuda-13.0/lib64 \
    && ln -sfn cuda-13.0 /usr/local/cuda \
    && for f in /usr/local/cuda-13.0/lib/lib*.so.*; do \
         b="$(basename "$f")"; ln -sfn "$b" "/usr/local/cuda-13.0/lib/${b%%.so.*}.so"; \
       done \
    && rm -rf /opt/cuda-wheels \
    && /usr/local/cuda/bin/nvcc --version

COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache,sharing=locked \
    tests=OFF; [ "${RUN_TESTS}" = 1 ] && tests=ON; \
    cuda=OFF; [ "${VARIANT}" = gpu ] && cuda=ON; \
    BUILD=build JOBS="${JOBS}" CMAKE_ARGS="-DLONGENC_BUILD_TESTS=${tests} -DLONGENC_CUDA=${cuda}" \
      scripts/build.sh \
    && if [ "${RUN_TESTS}" = 1 ]; then \
         BUILD=build JOBS="${JOBS}" PYTEST_ADDOPTS="--deselect tests/python/test_image.py" \
           scripts/run_tests.sh; \
       fi

# Stage the runtime files under $STAGE: bin/ (the server's RUNPATH set to $ORIGIN/../lib; the
# CLI links no torch and has none), lib/ (every
# shared library the binaries load from .venv; for gpu also the CUDA libraries torch opens
# with dlopen: cuDNN engines, NVRTC, ...), models/, and runtime-packages.txt (the Debian
# packages that own the system libraries the binaries load). The tests run this very step.
# $ORIGIN is for the loader, not the shell: hence single quotes (SC2016).
# hadolint ignore=SC2016
RUN stage="${STAGE:-/staging}"; build="${BUILD:-build}"; copy="${COPY_CMD:-cp -L}"; \
    set -eu; \
    site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
    mkdir -p "$stage/opt/longenc/bin" "$stage/opt/longenc/lib" "$stage/opt/longenc/models"; \
    cp "$build/bin/longenc-server" "$build/bin/longenc" "$stage/opt/longenc/bin/"; \
    strip --strip-debug "$stage/opt/longenc/bin/longenc-server" "$stage/opt/longenc/bin/longenc"; \
    cp -r models/all-MiniLM-L6-v2 "$stage/opt/longenc/models/"; \
    ldd "$build/bin/longenc-server" "$build/bin/longenc" > "$stage/ldd.txt"; \
    if grep -F "not found" "$stage/ldd.txt"; then exit 1; fi; \
    awk '$2 == "=>" && $3 ~ /^\// {print $3}' "$stage/ldd.txt" | sort -u > "$stage/libs.txt"; \
    grep -F "$site/" "$stage/libs.txt" | while read -r lib; do \
      $copy "$lib" "$stage/opt/longenc/lib/"; done; \
    if [ "${VARIANT}" = gpu ]; then \
      for lib in "$site"/torch/lib/*.so* "$site"/nvidia/*/lib/*.so*; do \
        case "$lib" in *libtorch_python.so) continue ;; esac; \
        [ -e "$stage/opt/longenc/lib/$(basename "$lib")" ] || $copy "$lib" "$stage/opt/longenc/lib/"; \
      done; \
    fi; \
    grep -vF "$site/" "$stage/libs.txt" | while read -r lib; do \
      owner=""; \
      for path in "$lib" "/usr$lib" "${lib#/usr}"; do \
        owner="$(dpkg -S "$path" 2>/dev/null)" && break; \
      done; \
      if [ -z "$owner" ]; then echo "no Debian package owns $lib" >&2; exit 1; fi; \
      echo "${owner%%: *}" | tr ',' '\n' | sed -e 's/^ *//' -e 's/:.*//'; \
    done | sort -u > "$stage/runtime-packages.txt"; \
    printf 'foreach(f IN LISTS FILES)\n  file(RPATH_SET FILE "${f}" NEW_RPATH "$ORIGIN/../lib")\nendforeach()\n' \
      > "$stage/rpath.cmake"; \
    cmake -D "FILES=$stage/opt/longenc/bin/longenc-server" -P "$stage/rpath.cmake"; \
    rm "$stage/rpath.cmake" "$stage/libs.txt" "$stage/ldd.txt"

# ---------------------------------------------------------------------------------------------
# The image (the last stage). One stage for both variants: what differs is in /staging. (A
# `FROM runtime-${VARIANT}` stage switch is not read the same way by every engine: Buildah 1.28
# looks for an image of that name.) scripts/image.sh --from-build builds this stage alone on a
# local build's staging directory (the image test's fast path).
FROM ${RUNTIME_BASE} AS runtime
ARG VARIANT
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The runtime Debian packages (gRPC, protobuf, Abseil, prometheus-cpp, ICU, ...): derived from
# the binaries in the build stage, installed from the same Debian release.
COPY --from=build /staging/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
    && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
    && groupadd --system --gid 10001 longenc \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin longenc
COPY --from=build /staging/opt/longenc /opt/longenc
COPY deploy/server.flags /etc/longenc/server.flags
COPY deploy/healthcheck.sh /opt/longenc/bin/longenc-healthcheck
# LONGENC_MODEL_DIR: the baked-in default model; mount another BERT directory and point
# --model_dir (or this variable) at it. Server flags may also come from FLAGS_<name> variables
# (server.flags lists them in --tryfromenv). NVIDIA_DRIVER_CAPABILITIES is read by the NVIDIA
# container toolkit only when GPUs are requested (`docker run --gpus all`, the Kubernetes device
# plugin), so it is harmless in the CPU image.
ENV PATH=/opt/longenc/bin:$PATH \
    LD_LIBRARY_PATH=/opt/longenc/lib \
    LONGENC_MODEL_DIR=/opt/longenc/models/all-MiniLM-L6-v2 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL org.opencontainers.image.title="longenc" \
      io.longenc.variant="${VARIANT}"
USER 10001:10001
WORKDIR /opt/longenc
# 50051: gRPC (longenc.v1.Encoder, grpc.health.v1, reflection). 9464: Prometheus /metrics.
EXPOSE 50051 9464
# The gRPC health service: SERVING only once the model is loaded and warmed up, NOT_SERVING while
# draining. longenc-healthcheck asks the port the server really bound (server.flags has it write
# --port_file), so it follows --port however that is set. start-period covers the model load.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["longenc-healthcheck"]
# SIGTERM drains (health NOT_SERVING, new calls UNAVAILABLE, queued work finishes, exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["longenc-server", "--flagfile=/etc/longenc/server.flags"]
CMD []
