#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs on a machine without a GPU or a CUDA
# toolkit, then prints the environment to build with (eval it):
#   - the CUDA 13.0 compiler and libraries from NVIDIA's PyPI wheels, in a venv;
#   - link names for the versioned libraries;
#   - a link-time stub of the driver library (libcuda.so.1), whose every function fails:
#     it only satisfies the linker. At run time the real driver library must come first.
# CUDA 13.0 exactly: cudarc picks its driver bindings from `nvcc --version`, and a newer
# toolkit than the driver of the machine that runs the binary fails at start.
set -euo pipefail

VENV="${CUDA_VENV:-$HOME/.cache/infer-node/cuda-13.0}"
if [ ! -x "$VENV/bin/pip" ]; then
    echo "installing the CUDA 13.0 toolkit wheels into $VENV" >&2
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import nvidia.cu13" 2>/dev/null || [ ! -x "$(echo "$VENV"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc)" ]; then
    "$VENV/bin/pip" install -q --no-deps \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
        nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.0.2.14 \
        nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88 >&2
fi
CU=$(echo "$VENV"/lib/python3*/site-packages/nvidia/cu13)
[ -x "$CU/bin/nvcc" ] || { echo "no nvcc under $CU" >&2; exit 1; }
(cd "$CU/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done && ln -sf libcurand.so.10 libcurand.so)

# The driver stub: every cu* function cudarc declares, each answering CUDA_ERROR_UNKNOWN.
STUB="$CU/lib/stubs/libcuda.so.1"
if [ ! -f "$STUB" ]; then
    cargo fetch --manifest-path "$(dirname "$0")/../Cargo.toml" >/dev/null 2>&1 || true
    SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys 2>/dev/null | head -n1)
    [ -n "$SYS" ] || { echo "cudarc's sources are not in the cargo registry (cargo fetch failed?)" >&2; exit 1; }
    mkdir -p "$CU/lib/stubs"
    C=$(mktemp --suffix .c)
    grep -rhoE '\bfn cu[A-Za-z0-9_]+\(' "$SYS" | sed -E 's/^fn (cu[A-Za-z0-9_]+)\($/\1/' | sort -u \
        | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$C"
    [ -s "$C" ] || { echo "found no driver functions in $SYS" >&2; exit 1; }
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB" "$C"
    ln -sf libcuda.so.1 "$CU/lib/stubs/libcuda.so"
    rm -f "$C"
fi

cat <<ENV
export PATH="$CU/bin:\$PATH" NVCC="$CU/bin/nvcc" CUDA_HOME="$CU" CUDA_ROOT="$CU" CUDA_PATH="$CU"
export LIBRARY_PATH="$CU/lib:$CU/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
