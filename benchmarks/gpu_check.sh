#!/usr/bin/env bash
# The GPU check of issue 13, in one run of at most ~10 minutes: torch_impl against torchvision,
# keras_impl parity against torch_impl (strict fp32 and TF32), `parity bench --frameworks
# torch,keras` and bf16 parity, once with Keras on the torch backend and once on JAX.
#
# For a machine with torch (CUDA), torchvision and JAX (CUDA) but no TensorFlow or Keras:
# Keras and its two missing dependencies travel as wheels in .whl/ (docs/gpu.md says how to
# fetch them) and are installed into /tmp/site. Results land in $OUT (default out/gpu_check):
#   env.txt                      nvidia-smi and package versions
#   torch.json, jax.json         every step's result (benchmarks/gpu_check.py), rewritten per step
#   torch.log, jax.log           the output of each backend's run
#   summary.md                   the tables for benchmarks/RESULTS.md
#
# Knobs (for a CPU trial run): GPU_CHECK_DEVICE=cpu GPU_CHECK_ARGS="--size 64 --batch 2 ..."
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
ARGS=${GPU_CHECK_ARGS:-}
PER_BACKEND_S=${GPU_CHECK_SECONDS:-270}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"

if ! "$PYTHON" -c "import keras" 2>/dev/null; then
  wheels=$(ls .whl/keras-*.whl .whl/namex-*.whl .whl/optree-*.whl 2>/dev/null)
  [ -n "$wheels" ] || { echo "Keras is not installed and .whl/ holds no keras, namex, optree wheels" >&2; exit 2; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels \
    || exit 2
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
# torch and JAX share the GPU in one process: JAX must not take 75% of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 || true
  "$PYTHON" -m pip list 2>/dev/null | grep -iE '^(torch|torchvision|jax|jaxlib|jax-cuda[0-9]+-(plugin|pjrt)|keras|numpy|onnx|onnxruntime|tensorflow|triton) '
  "$PYTHON" -c "import importlib.util as u; print('tensorflow installed:', u.find_spec('tensorflow') is not None)"
  nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

status=0
for backend in torch jax; do
  # shellcheck disable=SC2086  # ARGS is a list of options
  KERAS_BACKEND=$backend timeout "$PER_BACKEND_S" "$PYTHON" benchmarks/gpu_check.py --device "$DEVICE" \
    --out "$OUT/$backend.json" $ARGS > "$OUT/$backend.log" 2>&1
  code=$?
  [ $code -eq 124 ] && echo "[$backend] stopped after ${PER_BACKEND_S} s (timeout): partial results" >> "$OUT/$backend.log"
  [ $code -ne 0 ] && status=1
  grep -E '^\[(torch|jax)\]' "$OUT/$backend.log"
done

"$PYTHON" benchmarks/gpu_check.py --summary "$OUT/torch.json" "$OUT/jax.json" > "$OUT/summary.md"
cat "$OUT/summary.md"
exit $status
