#!/usr/bin/env bash
# One prepared GPU check (at most 8 minutes on one H100/H200): every CUDA path once, throughput, then the paper's
# Fashion-MNIST protocol with the time left. Results: $OUT/gpu_check/results.json and gpu_check.log (or --out DIR).
#   bash benchmarks/gpu_check.sh                   # on the GPU machine
#   bash benchmarks/gpu_check.sh --smoke --out DIR # the same checks on the CPU in seconds (tests/test_gpu_check.py)
# Options: --budget SECONDS (hard limit), --data-dir DIR (real Fashion-MNIST IDX files), --no-protocol.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
exec "$python" "$here/gpu_check.py" "$@"
