#!/usr/bin/env bash
# Every CPU result in the book, regenerated with the current code (issue 18), highest priority
# first: each preset's runs (its grid) and each study, from its preset. A run whose results/ folder
# is current (fingerprint, clean tree, same config: `train --skip-current`) is skipped, and an
# unfinished one resumes from runs/, so the script can be killed and rerun, on this machine or on a
# fresh clone; `train` publishes into results/, so `git diff results/` shows what changed. Run it from a clean tree (git_dirty: false) and commit results/ as runs finish.
# The strong attack (APGD-CE + APGD-T) runs on the CIFAR headline models (all seeds), CURE and
# adversarial training, every MNIST model and the old small CIFAR preset (its own eps grid); the
# other CIFAR variants get PGD only.
#
# Measured (issue 18, 2 cores): a cifar10-jpeg-cpu16 Standard or LCNN run takes about 21 min to
# train and 17-25 min to evaluate on one thread, with a second run beside it on the other core.
# GradReg and LCNN + GradReg (double backward) take about 75 min to train (4.5-5.5 min an epoch) and
# 30 min to evaluate: 1:44-1:49 wall a run. With little else on the machine (a later session),
# seed 1 took 48 and 60 min to train and 1:02 / 1:29 wall with evaluation.
# The regeneration ran two such lanes from a clean worktree, each run one line like
#   OMP_NUM_THREADS=1 python -m lcnn_core train --quiet --resume --preset cifar10-jpeg-cpu16 --variant standard --seed 1
# and committed each run's results/ folder as it finished (the book's reproducing page lists
# which folders match the current code).
set -euo pipefail
export PYTHONUNBUFFERED=1
T="python -m lcnn_core train --quiet --resume --skip-current"
NO_APGD=(--set eval_apgd_samples=null)

# 1. the CPU CIFAR preset: four headline variants x 3 seeds, with APGD; the more-effort check
#    (2x steps and restarts at the middle eps) on seed 0 of Standard and LCNN
for v in standard lcnn; do
  $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed 0 --set eval_attack_check=true
done
for seed in 0 1 2; do
  for v in standard lcnn gradreg lcnn_gradreg; do
    case "$v-$seed" in standard-0|lcnn-0) continue ;; esac  # above, with the check
    $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed "$seed"
  done
done
# 1b. the more-effort check where the number can fall (eps 0.25, seed 0 of Standard and LCNN)
python -m lcnn_core attack-effort
# 2. what lowers curvature: LCNN at lambda 0, each component alone, Softplus + Wt. Decay, 3 seeds;
#    measured: about 28 min a run (22 training, 6 evaluation) on one thread beside a second lane
#    (12.5-16 min a run when nothing else runs beside the two lanes)
for seed in 0 1 2; do
  for v in lcnn_nopen csoftplus snconv clipbn softplus_wd; do
    $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed "$seed" "${NO_APGD[@]}"
  done
done
# 3. the team-drop ablation at the CPU CIFAR scale (16 runs: 4 lambda pairs x 2 budgets x 2 seeds);
#    measured on one thread beside a second lane: a 4-epoch run about 10 min (6 of them evaluation),
#    a 16-epoch run about 23 min; two lanes (one per seed) took about 2.5 hours
$T --preset cifar10-jpeg-cpu16-ablation
# 4. MNIST: the README preset (its grid: 15 runs, three seeds of the headline four) with APGD at eps 1, 2, 3; the MNIST ablation
$T --preset cpu-default
$T --preset ablation-mnist          # measured: 8 runs in 22.5 min on one thread
# 5. CURE and adversarial training on CIFAR, three seeds (CURE: the gradient-masking flag; the ledger's
#    baseline rows need two seeds or more); measured on one thread beside a second lane: CURE 1:39 wall
#    (5.5 min an epoch, 12 min of APGD), adversarial training 54 min (2.5 min an epoch, 10 min of APGD).
#    On the machine of 2026-12-07 the same code took about twice that: 4.3-6.8 min (mean 5) an adversarial-training
#    epoch; CURE seeds 1 and 2 (two sessions, resumed from their checkpoints) 8.6-13.7 min an epoch
#    (mean 10.2, 152 min of training) and about 26 min of evaluation, 23 of it APGD: about 3 hours a seed
for seed in 0 1 2; do
  for v in adv cure; do
    $T --preset cifar10-jpeg-cpu16 --variant "$v" --seed "$seed"
  done
done
# 5b. "at the same accuracy" with power (issue 33, book/accuracy_design.md): Standard, LCNN, LCNN + GradReg,
#    10 seeds each, accuracy on all 10,000 test images, no APGD; about the cpu16 training times a run
#    (21 / 21 / 44-75 min on one thread beside a second lane) plus a few minutes of evaluation
#    measured on the machine of 2026-12-07 (LCNN + GradReg seeds 0-2, one thread beside a second lane): 15 epochs
#    of 4.2-5.8 min, about 70 min of training and 4 of evaluation, 76-78 min wall a run
$T --preset cifar10-jpeg-cpu16-accuracy
#    and MNIST's design (cpu-default's training, 10 seeds of the same three models; about 1.2 lane-hours
#    of training at cpu-default's times, plus about a minute of evaluation a run); measured on the machine of
#    2026-12-07, one thread beside a second lane: Standard 107 s, LCNN 115 s, LCNN + GradReg 261 s wall a run
#    (means of ten), the 30 runs in about 80 min on two lanes
$T --preset cpu-default-accuracy
# 6. the old small CIFAR preset, kept as a smaller rerun; the studies
#    measured (one thread beside a second lane): GradReg and LCNN + GradReg 16-17 min a run with APGD
#    (6.5 of them training); tightness's weights (--no-eval, below) about 40 min for the 20 models it
#    lacks; yao 33 min plus 6 for its loss-matched control
$T --preset cifar10-jpeg-cpu
python -m lcnn_core linear-baseline
# training against eval mode: retrains four MNIST ablation runs under runs/ (reused if there) and
# tests each three ways; measured 72 s with the runs trained, about 14 min from nothing (one thread,
# beside two training lanes)
OMP_NUM_THREADS=1 python -m lcnn_core mode-gap
# the tightness study reads trained weights (runs/, gone on a fresh machine): train, without
# evaluating or publishing, whatever of its presets is missing there (CPU training is deterministic,
# so these are the committed models; tests/test_rerun.py checks that on the two smoke runs)
for p in ablation-mnist cifar10-jpeg-cpu cpu-default; do
  python -m lcnn_core train --quiet --resume --no-eval --preset "$p"
done
python -m lcnn_core tightness
python -m lcnn_core yao
# 7. the CI rerun check's reference files (one thread, as tests/test_rerun.py runs them)
OMP_NUM_THREADS=1 $T --preset smoke --out /tmp/smoke-runs
