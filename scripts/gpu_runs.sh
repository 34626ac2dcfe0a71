#!/usr/bin/env bash
# Runs of the h100-cifar10-jpeg preset side by side on one GPU, then packs the small result files
# into $OUT/results.tgz. Usage: scripts/gpu_runs.sh RUN ... (names from the preset's grid:
# python -m lcnn_core list-presets). Expects the CIFAR-10 JPEG archive at .gpu/cifar10-jpeg.tar.gz.
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OUT=${OUT:-/tmp/out}
mkdir -p data/cifar10-jpeg "$OUT"
[ -d data/cifar10-jpeg/train ] || tar xzf .gpu/cifar10-jpeg.tar.gz -C data/cifar10-jpeg
python3 -c "from lcnn_core.data import load_dataset; load_dataset('cifar10-jpeg')" 2>/dev/null  # decode once
for run in "$@"; do python3 -m lcnn_core train --preset h100-cifar10-jpeg --run "$run" --quiet >"$OUT/$run.log" 2>&1 & done
status=0; for p in $(jobs -p); do wait "$p" || status=1; done
tar czf "$OUT/results.tgz" results/h100-cifar10-jpeg
exit $status
