#!/usr/bin/env bash
# Every method x 3 seeds on real Fashion-MNIST, LeNet-5 student, one ResNet-8 teacher, one soft-label artifact:
# the numbers of docs/RESULTS.md, "Every method side by side". About 2 hours on 2 CPU cores.
# Usage: bash benchmarks/compare_fashion_mnist.sh [OUT]   (then copy the small files: benchmarks/collect_compare.py)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/compare-fmnist}"
TEACHER_DIR="${OUT}-teacher-resnet8"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# The teacher is a plain CE run of a CIFAR-style ResNet-8 (10 epochs), trained once.
[ -f "$TEACHER_DIR/summary.json" ] || .venv/bin/reffakd train --model resnet8 --method ce --epochs 10 --seed 0 --no-progress --out "$TEACHER_DIR"

# Methods without a teacher network, then the teacher methods; one spec, so the second call resumes the same folder.
.venv/bin/reffakd compare --out "$OUT" --methods ce,ls,tfkd-reg,reffakd,dkd-aesl,tfkd-self --seeds 0,1,2 \
    --teacher "$TEACHER_DIR/best.safetensors" --no-progress
.venv/bin/reffakd compare --out "$OUT" --methods kd,dkd --seeds 0,1,2 --teacher "$TEACHER_DIR/best.safetensors" --no-progress
