#!/usr/bin/env bash
# Every CPU result in the book: each preset's runs (its grid) and each study, from its preset.
# Finished runs are skipped; `train` publishes into results/, so `git diff results/` shows what changed.
set -euo pipefail
python -m lcnn_core train --preset cpu-default --quiet --resume
python -m lcnn_core train --preset ablation-mnist --quiet --resume
python -m lcnn_core train --preset cifar10-jpeg-cpu --quiet --resume
python -m lcnn_core linear-baseline
python -m lcnn_core tightness
python -m lcnn_core yao
