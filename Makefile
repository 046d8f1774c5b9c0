# The two commands of the README: `make serve` and `make test`. Both bootstrap first
# (apt packages, .venv, the default model), so a fresh clone needs nothing else.
BUILD ?= build
# The CPU-only programs the container image packages (LONGENC_CUDA=OFF: libtorch_cpu, no CUDA).
BUILD_CPU ?= build-cpu
JOBS ?= $(shell nproc)
VARIANT ?= cpu
SERVE_FLAGS ?=

.PHONY: all bootstrap build build-cpu test serve image image-local clean help
all: build

help:
	@echo "make serve   install what is missing, build, start longenc-server on CPU with the default model"
	@echo "make test    install what is missing, build, run every test (ctest + tests/python)"
	@echo "make build   configure and build into $(BUILD)/ (binaries in $(BUILD)/bin/)"
	@echo "make image   build the container image longenc:$(VARIANT) from the Dockerfile (VARIANT=gpu for the GPU image)"
	@echo "make image-local     the CPU image from this machine's build-cpu/ (the image test's fast path)"
	@echo "make test-sanitize   ASan+UBSan build of every C++ test (LibTorch and integration included), TSan of batcher/service"
	@echo "make fuzz            short libFuzzer runs of every target"

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	@BUILD=$(BUILD) JOBS=$(JOBS) scripts/build.sh

# longenc-server and the CLI only, with LONGENC_CUDA=OFF, for the CPU image (tests/python/test_image.py).
# ccache serves it build/'s objects where the preprocessed source is the same (torch-free code).
build-cpu: bootstrap
	@BUILD=$(BUILD_CPU) JOBS=$(JOBS) TARGETS="longenc-server longenc" \
	  CMAKE_ARGS="-DLONGENC_CUDA=OFF -DLONGENC_BUILD_TESTS=OFF" scripts/build.sh

test: build build-cpu
	@BUILD=$(BUILD) BUILD_CPU=$(BUILD_CPU) JOBS=$(JOBS) scripts/run_tests.sh

serve: build
	@echo "longenc-server: gRPC on 0.0.0.0:50051, metrics on 0.0.0.0:9464/metrics (Ctrl-C drains and stops)"
	$(BUILD)/bin/longenc-server --device=cpu $(SERVE_FLAGS)

# The container image (docs/DEPLOY.md): podman or docker, the Debian base images made locally
# when no registry answers.
image: bootstrap
	@VARIANT=$(VARIANT) JOBS=$(JOBS) scripts/image.sh

image-local: build-cpu
	@scripts/image.sh --from-build $(BUILD_CPU)

clean:
	rm -rf $(BUILD) $(BUILD_CPU)

# Sanitizer builds (ASan+UBSan over every C++ test, the LibTorch layer and the integration tests
# against an ASan-built server included; TSan over batcher and service) and short libFuzzer runs
# of every target; see docs/RELIABILITY.md.
.PHONY: test-sanitize fuzz
test-sanitize: bootstrap
	@SANITIZE_MODEL=ON scripts/sanitize.sh

fuzz: bootstrap
	@scripts/fuzz.sh
