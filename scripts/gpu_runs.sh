#!/usr/bin/env bash
# Runs of the h100-cifar10-jpeg preset side by side on one GPU, then packs the small
# result files into $OUT/results.tgz. Usage: scripts/gpu_runs.sh "NAME:VARIANT:LAMBDA" ...
# Expects the CIFAR-10 JPEG archive at .gpu/cifar10-jpeg.tar.gz (carried, git-ignored).
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/out}
mkdir -p data/cifar10-jpeg "$OUT"
[ -d data/cifar10-jpeg/train ] || tar xzf .gpu/cifar10-jpeg.tar.gz -C data/cifar10-jpeg
python3 -c "from lcnn_core.data import load_dataset; load_dataset('cifar10-jpeg')" 2>/dev/null  # decode once
pids=()
for spec in "$@"; do
  IFS=: read -r name variant lam <<<"$spec"
  python3 -m lcnn_core train --preset h100-cifar10-jpeg --variant "$variant" --name "$name" \
    --set lam_beta="$lam" --set lam_gamma="$lam" --results results --quiet >"$OUT/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
tar czf "$OUT/results.tgz" results/h100-cifar10-jpeg
exit $status
