#!/usr/bin/env bash
# Every CPU result in the book, in the order they were made (finished runs are skipped).
set -euo pipefail
python -m lcnn_core train --preset cpu-default --seed 0 --quiet --resume
scripts/ablation.sh ablation-mnist
python -m lcnn_core train --preset cifar10-jpeg-cpu --seed 0 --quiet --resume
python -m lcnn_core train --preset cpu-default --seed 1 --quiet --resume
python -m lcnn_core train --preset cifar10-jpeg-cpu --seed 1 --quiet --resume
python -m lcnn_core train --preset cpu-default --variant cure --seed 0 --quiet --resume
python -m lcnn_core train --preset cpu-default --variant softplus_wd --seed 0 --quiet --resume
python -m lcnn_core train --preset cpu-default --variant adv --seed 0 --quiet --resume
