#!/usr/bin/env bash
# One GPU session, one run: every CUDA path of `bigbigan bench` side by side. Writes
# out/bench-gpu/ (gpu.txt, table.txt, cuda/bench.json, cuda/bench.png).
#
#   bash benchmarks/gpu.sh            # from the repository root, with the venv at .venv
#
# Needs a CUDA build of torch 2.13.0 in that venv (PY=... to use another interpreter); the
# project's default venv has the CPU build, and then the script stops at the check below.
#
# The CUDA rows: PyTorch eager and CUDA graphs in fp32 (TF32 off), bf16 and fp16; AOTInductor
# packages for CUDA in fp32/bf16/fp16; ONNX Runtime's CUDA provider when onnxruntime-gpu is
# installed (otherwise the ratios divide by PyTorch fp32). Rows at every batch report the
# fraction of the GPU's dense bf16 peak (table in bigbigan/bench/run.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/bench-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'this torch sees no CUDA GPU'; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
# ch=64 random weights (batch-norm statistics measured), batch 1/16/256/1024, 20 timed calls.
"$PY" -m bigbigan bench --device cuda --ch 64 --batch-sizes 1,16,256,1024 --repeats 20 \
  --warmup 5 --out "$OUT/cuda" 2>&1 | tee "$OUT/table.txt"
