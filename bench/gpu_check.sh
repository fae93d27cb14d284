#!/usr/bin/env bash
# The GPU check, one script (under 5 minutes on one GPU): the suite on cuda, training and evaluation speed side by
# side (bench/gpu_check.py), and a 1-GPU torchrun training. Run from the repository root with the venv active.
set -euo pipefail
export MPLBACKEND=Agg
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
timeout 240 python -m pytest -q -x --device cuda tests/models tests/objectives tests/training tests/evaluation || echo "suite on cuda: FAILED"
timeout 150 python bench/gpu_check.py --device cuda
out=$(mktemp -d)
timeout 90 torchrun --nproc_per_node=1 -m vaekit train --out "$out/run" --preset mnist-mlp train.device=cuda \
  train.epochs=1 --quiet && tail -n 3 "$out/run/metrics.jsonl" | cut -c1-200
