# infer-node: `make run` starts a single-node devnet, `make test` runs every check CI runs.
# On a fresh Debian machine both first install what the build needs (libclang for RocksDB).

CARGO ?= cargo
# Test builds: a binary that can forge its answers, and the scenario that runs one.
TEST_FEATURES := infer-node/test-cheats,fai-tests/test-cheats
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps pydeps build build-cuda run test test-e2e lint fmt bench fuzz clean

all: build

# RocksDB's build runs bindgen, which needs libclang; a C++ compiler builds RocksDB itself.
deps:
	@if command -v dpkg >/dev/null && { ! dpkg -s libclang-dev >/dev/null 2>&1 || ! command -v c++ >/dev/null; }; then \
		echo "installing libclang-dev and g++ (needed to build RocksDB)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libclang-dev g++ >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

build: deps
	$(CARGO) build --release -p infer-node

# The CUDA engine, into its own target directory (`make run`'s binary stays CPU-only). No GPU
# or CUDA toolkit is needed to build: scripts/cuda-toolchain.sh installs the CUDA 13.0
# compiler and libraries from PyPI wheels and a link stub of the driver library.
# CUDA_COMPUTE_CAP picks the GPU generation (90: H100/H200, 89: RTX 40xx, 86: RTX 30xx).
CUDA_TARGET_DIR ?= target/cuda
build-cuda: deps
	@command -v xz >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq xz-utils >/dev/null; }
	eval "$$(scripts/cuda-toolchain.sh)" && CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) $(CARGO) build --release -p infer-node --features cuda
	@echo "built $(CUDA_TARGET_DIR)/release/infer-node: it needs the GPU driver's libcuda.so.1 and the CUDA 13 libraries (libcublas, libcudart, libcurand) at run time"

# A working single-node devnet on the built-in configuration: mines a block every few
# seconds into ~/.infer-node/devnet. Ctrl-C stops it cleanly; running it again resumes.
run: build
	./target/release/infer-node start

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features $(TEST_FEATURES) -- -D warnings

# The OpenAI-compatible proxy is tested with the official openai Python package.
pydeps:
	@python3 -c "import openai" 2>/dev/null || { \
		{ python3 -m pip --version >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3 python3-pip >/dev/null; }; } && \
		echo "installing the openai Python package (for the wallet serve test)" && \
		{ python3 -m pip install -q openai 2>/dev/null || python3 -m pip install -q --break-system-packages openai; }; }

# Test builds carry the test-cheats feature, so that the end-to-end tests can run a node
# that forges its answers (release builds refuse that setting).
test: lint pydeps
	$(CARGO) test --workspace --features $(TEST_FEATURES)

# The slow end-to-end scenarios too: five-node networks through crashes and a partition.
# The suites in tests/ drive the binary, which is built first (with test-cheats).
test-e2e: deps
	$(CARGO) build --workspace --features $(TEST_FEATURES)
	$(CARGO) test --workspace --features $(TEST_FEATURES) --test e2e -- --include-ignored

# The figures against this machine's limits, then Criterion's statistics over the same
# hot paths (to compare two builds).
bench: build
	./target/release/infer-node bench pow
	./target/release/infer-node bench validate
	$(CARGO) bench -p fai-bench

# Coverage-guided fuzzing of every decoder that reads bytes from peers, disk or the RPC
# (fuzz/, outside the workspace), each target for FUZZ_SECONDS (default 60), on the stable
# toolchain: cargo-fuzz is installed if missing. Not part of `make test`.
fuzz: deps
	scripts/fuzz.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
