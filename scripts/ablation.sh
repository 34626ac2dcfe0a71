#!/usr/bin/env bash
# The lambda x epochs ablation behind the book's "team's accuracy drop" chapter.
# Usage: scripts/ablation.sh [PRESET] (default ablation-mnist); finished runs are skipped.
set -euo pipefail
preset=${1:-ablation-mnist}
for epochs in 5 20; do
  for lam in 0 1e-3 1e-2 1e-1; do
    python -m lcnn_core train --preset "$preset" --name "lcnn-lam${lam}-e${epochs}-s0" \
      --set lam_beta="$lam" --set lam_gamma="$lam" --set epochs="$epochs" --quiet --resume
  done
done
