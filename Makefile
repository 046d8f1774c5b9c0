# The two commands of the README: `make serve` and `make test`. Both bootstrap first
# (apt packages, .venv, the default model), so a fresh clone needs nothing else.
BUILD ?= build
JOBS ?= $(shell nproc)
SERVE_FLAGS ?=

.PHONY: all bootstrap build test serve clean help
all: build

help:
	@echo "make serve   install what is missing, build, start longenc-server on CPU with the default model"
	@echo "make test    install what is missing, build, run every test (ctest + tests/python)"
	@echo "make build   configure and build into $(BUILD)/ (binaries in $(BUILD)/bin/)"
	@echo "make test-sanitize   ASan+UBSan build of every C++ test (LibTorch and integration included), TSan of batcher/service"
	@echo "make fuzz            short libFuzzer runs of every target"

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	@BUILD=$(BUILD) JOBS=$(JOBS) scripts/build.sh

test: build
	@BUILD=$(BUILD) JOBS=$(JOBS) scripts/run_tests.sh

serve: build
	@echo "longenc-server: gRPC on 0.0.0.0:50051, metrics on 0.0.0.0:9464/metrics (Ctrl-C drains and stops)"
	$(BUILD)/bin/longenc-server --device=cpu $(SERVE_FLAGS)

clean:
	rm -rf $(BUILD)

# Sanitizer builds (ASan+UBSan over every C++ test, the LibTorch layer and the integration tests
# against an ASan-built server included; TSan over batcher and service) and short libFuzzer runs
# of every target; see docs/RELIABILITY.md.
.PHONY: test-sanitize fuzz
test-sanitize: bootstrap
	@SANITIZE_MODEL=ON scripts/sanitize.sh

fuzz: bootstrap
	@scripts/fuzz.sh
