#!/usr/bin/env bash
# Prepares the GPU check: builds the CUDA binary here (no GPU needed, see
# scripts/cuda-toolchain.sh), strips and compresses it into gpu-check/ (git-ignored) so
# that it fits a lent machine's upload. Then, on the GPU machine, from the repository
# root with gpu-check/ carried along:  bash scripts/gpu-check-remote.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make build-cuda
mkdir -p gpu-check
strip -o gpu-check/infer-node "${CUDA_TARGET_DIR:-target/cuda}/release/infer-node"
xz -T2 -6 -f gpu-check/infer-node
ls -l gpu-check/
