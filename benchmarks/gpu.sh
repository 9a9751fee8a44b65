#!/usr/bin/env bash
# One GPU session, one run: every CUDA path of `bigbigan bench` side by side, and the CPU run
# on the same machine for reference. Writes out/bench-gpu/ (bench.json, bench.png, table.txt).
#
#   bash benchmarks/gpu.sh            # from the repository root, with the venv at .venv
#
# The CUDA rows: PyTorch eager and CUDA graphs in fp32 (TF32 off), bf16 and fp16; AOTInductor
# packages for CUDA in fp32/bf16/fp16; ONNX Runtime's CUDA provider when onnxruntime-gpu is
# installed (otherwise the ratios divide by PyTorch fp32). Rows at every batch report the
# fraction of the GPU's dense bf16 peak (table in bigbigan/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/bench-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
# ch=64 random weights (batch-norm statistics measured), batch 1/16/256, 20 timed rounds.
"$PY" -m bigbigan bench --device cuda --ch 64 --batch-sizes 1,16,256,1024 --repeats 20 \
  --warmup 5 --out "$OUT/cuda" 2>&1 | tee "$OUT/table.txt"
