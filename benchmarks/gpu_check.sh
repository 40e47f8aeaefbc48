#!/usr/bin/env bash
# ResNet50 on every visible GPU: train-step throughput (float32, float16, bfloat16; XLA off/on),
# MirroredStrategy training, an export and its eval, in one table (see benchmarks/gpu_check.py).
# Without a GPU: one line saying so, then the same steps at a tiny size.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec timeout 480 "$PYTHON" benchmarks/gpu_check.py
