#!/usr/bin/env bash
# The project's GPU checks in one run (under 8 minutes on one GPU), for a machine with CUDA:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. the tests marked `cuda` (tests/test_cuda.py);
# 2. the 2D-navigation meta-iteration at meta-batch 20, 200 and 2000 tasks (seconds per iteration,
#    tasks per second: benchmarks/maml_nav_iteration.py --meta-batch-sizes);
# 3. with two GPUs, the data-parallel equality run over nccl (tests/test_distributed.py's, under
#    torchrun with 2 processes);
# 4. the Atari MAML-A2C meta-step at meta-batch 4, first and second order, on the GPU (seconds,
#    peak GPU memory: benchmarks/atari_maml_step.py --part step --device cuda);
# On a machine without CUDA it runs the CPU-safe parts (the gloo equality tests, meta-batch 20)
# and says what it skipped. Each step's output goes to OUT_DIR (default: a new temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
gpus=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
echo "GPUs: $gpus; results in $out"
status=0
if [ "$gpus" -ge 1 ]; then
  python -c "import torch; print(torch.cuda.get_device_name(0), torch.__version__)" | tee "$out/device.txt"
  python -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.txt" || status=1
  python benchmarks/maml_nav_iteration.py --default-only --meta-batch-sizes 20 200 2000 --iterations 3 --warmup 1 \
    --json "$out/maml_nav_iteration.json" 2>&1 | tee "$out/maml_nav_iteration.txt" || status=1
  python benchmarks/atari_maml_step.py --part step --device cuda --repeats 3 \
    --json "$out/atari_maml_step.json" 2>&1 | tee "$out/atari_maml_step.txt" || status=1
else
  echo "skipped: the cuda tests, the meta-batch 200 / 2000 timings and the Atari meta-step on the GPU (no CUDA device)"
  python benchmarks/maml_nav_iteration.py --default-only --meta-batch-sizes 20 --iterations 3 --warmup 1 \
    --json "$out/maml_nav_iteration.json" 2>&1 | tee "$out/maml_nav_iteration.txt" || status=1
fi
if [ "$gpus" -ge 2 ]; then
  FM_TEST_BACKEND=nccl python -m pytest -q tests/test_distributed.py 2>&1 | tee "$out/distributed.txt" || status=1
else
  echo "skipped: the 2-GPU nccl equality run (fewer than 2 GPUs); running the gloo one on the CPU"
  python -m pytest -q tests/test_distributed.py 2>&1 | tee "$out/distributed.txt" || status=1
fi
echo "gpu_check: done (status $status); results in $out"
exit $status
