#!/usr/bin/env bash
# The lambda x epochs ablation behind the book's "team's accuracy drop" chapter: every grid
# entry of the preset (lcnn_core/presets/PRESET.yaml); finished runs are skipped.
# Usage: scripts/ablation.sh [PRESET] (default ablation-mnist; also cifar10-jpeg-cpu16-ablation)
set -euo pipefail
preset=${1:-ablation-mnist}
python -m lcnn_core train --preset "$preset" --quiet --resume
