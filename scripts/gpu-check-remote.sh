#!/usr/bin/env bash
# Runs on a GPU machine (no Rust, no network): unpacks gpu-check/infer-node.xz, finds the
# driver's libcuda.so.1 and the CUDA 13 libraries, checks that nothing is missing, and
# runs `infer-node bench gpu-check`, whose results (one JSON line each, written as they
# come) land in $OUT. TIME_LIMIT bounds the whole check (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT"
BIN=/tmp/infer-node-cuda
xz -dc gpu-check/infer-node.xz > "$BIN" && chmod +x "$BIN" || { echo "cannot unpack gpu-check/infer-node.xz" | tee "$OUT/error.txt"; exit 1; }
DRIVER=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')
if [ -z "$DRIVER" ]; then
    DRIVER=$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/local/nvidia/lib/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -n1)
fi
LIBS=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd: -)
export LD_LIBRARY_PATH="${DRIVER:+$(dirname "$DRIVER"):}${LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" > "$OUT/env.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
ldd "$BIN" > "$OUT/ldd.txt" 2>&1
if grep -q "not found" "$OUT/ldd.txt"; then
    echo "missing libraries:"; grep "not found" "$OUT/ldd.txt"; exit 1
fi
timeout "${TIME_LIMIT:-480}" "$BIN" bench gpu-check --device cuda --out "$OUT/gpu-check.jsonl" 2> "$OUT/stderr.txt"
echo "exit $?"
tail -c 4000 "$OUT/gpu-check.jsonl"
