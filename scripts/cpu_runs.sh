#!/usr/bin/env bash
# Every committed CPU result, regenerated with the current code (issue 18), highest priority
# first; finished runs are skipped, so the script can be killed and rerun. Run it from a clean
# tree (git_dirty: false in every provenance.json) and commit results/ as runs finish.
# The strong attack (APGD-CE + APGD-T) runs on the headline models and all their seeds; the
# other variants get PGD with restarts only (eval_apgd_samples=null).
set -euo pipefail
export PYTHONUNBUFFERED=1
T="python -m lcnn_core train --quiet --resume"
MNIST_APGD=(--set eval_apgd_samples=200 --set "eval_apgd_eps=[1.0, 2.0, 3.0]")
NO_APGD=(--set eval_apgd_samples=null)

# 1. the CPU CIFAR preset: four headline variants x 3 seeds, with APGD; the more-effort check
#    (2x steps and restarts at the middle eps) on seed 0 of Standard and LCNN
for v in standard lcnn; do
  $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed 0 --set eval_attack_check=true
done
for seed in 0 1 2; do
  for v in standard lcnn gradreg lcnn_gradreg; do
    $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed "$seed"
  done
done
# 2. what lowers curvature: LCNN at lambda 0, each component alone, Softplus + Wt. Decay, 3 seeds
for seed in 0 1 2; do
  for v in lcnn_nopen csoftplus snconv clipbn softplus_wd; do
    $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed "$seed" "${NO_APGD[@]}"
  done
done
# 3. the team-drop ablation at the CPU CIFAR scale (16 runs: 4 lambda pairs x 2 budgets x 2 seeds)
$T --preset cifar10-jpeg-cpu16-ablation
# 4. MNIST: the README preset with APGD, its other baselines, the MNIST ablation
$T --preset cpu-default "${MNIST_APGD[@]}"
for v in cure softplus_wd adv; do
  $T --preset cpu-default --variant "$v" --seed 0 "${NO_APGD[@]}"
done
$T --preset ablation-mnist
# 5. CURE and adversarial training on CIFAR, one seed (CURE: the gradient-masking flag)
for v in cure adv; do
  $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed 0
done
# 6. the old small CIFAR preset, kept as a smaller rerun
$T --preset cifar10-jpeg-cpu
# 7. the CI rerun check's reference files (one thread, as tests/test_rerun.py runs them)
OMP_NUM_THREADS=1 $T --preset smoke --out /tmp/smoke-runs
