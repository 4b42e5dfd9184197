#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU tests and the benchmark, bf16 + channels_last and fp32.
# Installs nothing: it needs torch, torchvision, numpy, scikit-learn, scipy, tqdm and pillow, which the
# lent machines' image holds; optuna is not needed by these checks.
# Usage (from the repo root): bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "== equivalence tests (float32 curves, BR-NPA, backbone) on this machine"
timeout 240 python3 -m pytest -q tests/unit/test_perturbation.py tests/unit/test_br_npa.py tests/unit/test_resnet.py tests/unit/test_amp.py 2>&1 | tail -3
echo "== released order (--att_metrics_saliency released) of a GPU saliency with ties: the CPU's topk order"
timeout 60 python3 -c "
import torch
from brnpa.metrics.perturbation import topk_step_masks
ties = torch.tensor([[0., 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1]])
on_gpu = topk_step_masks(ties.cuda(), 2)
print('same as on the CPU:', on_gpu.device.type == 'cuda' and torch.equal(on_gpu.cpu(), topk_step_masks(ties, 2)))
" 2>&1 | tail -3
echo "== benchmark: bf16 autocast + channels_last (defaults)"
timeout 240 python3 -m bench.bench --preset gpu 2>&1 | tee /tmp/bench_bf16.txt | tail -18
echo "== benchmark: fp32, contiguous"
timeout 240 python3 -m bench.bench --preset gpu --extra "--amp False --channels_last False" 2>&1 | tail -18
