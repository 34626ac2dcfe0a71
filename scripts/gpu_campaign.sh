#!/usr/bin/env bash
# The GPU campaign (issue 17) in one device call. Two steps:
#
#   scripts/gpu_campaign.sh prepare        # here, in the checkout the device call sends (clean tree)
#   scripts/gpu_campaign.sh run [BUDGET]   # there: the device command (BUDGET seconds, default 480)
#   scripts/gpu_campaign.sh bench          # there: the training-cost benchmark, eager and captured (<= 4 min)
#   scripts/gpu_campaign.sh next [END]     # there: the next lent call (issue 30) in one command of at most
#                                          # END seconds (default 540): bench (at most 4 min), then a campaign
#                                          # of what the GPU table lacks (PRESET, default h100-cifar10-jpeg,
#                                          # 3 processes) in the time left
#
# prepare copies the CIFAR-10 JPEG archive to data/cifar10-jpeg.tar.gz (git-ignored; run points
# LCNN_SHARED_DATA there), writes its md5 and the commit's sha to .gpu/campaign/, and puts pyautoattack's
# code (without its 44 MB example model) in .gpu/campaign/site, because the device has no .git and
# no pyautoattack. The device call then carries exactly those two paths:
#
#   run(command="bash scripts/gpu_campaign.sh run 480", timeout_s=570,
#       carry=["data/cifar10-jpeg.tar.gz", ".gpu/campaign"])
##   run(command="bash scripts/gpu_campaign.sh next", timeout_s=570,
#       carry=["data/cifar10-jpeg.tar.gz", ".gpu/campaign"])
#
# run verifies the archive, prints the GPU, and runs
#   python -m lcnn_core campaign --preset gpu-campaign --budget BUDGET --concurrent auto --pack $OUT
# which probes 1..4 processes sharing the GPU, plans, trains what fits, evaluates (TF32 off) and
# packs $OUT/campaign-gpu-campaign.tar.gz (+ .md5); $OUT/campaign.log and $OUT/gpu.txt come back too.
# Back here: python -m lcnn_core campaign --unpack <files_at>/campaign-gpu-campaign.tar.gz
# CONCURRENT=3 (say) skips the probe; PRESET=... runs another campaign preset; TIMING="eval_s=60"
# overrides planning estimates (campaign.DEFAULT_TIMINGS); left unset, the planner reads them from the
# committed records of earlier calls (lcnn_core.timing). GPUS=cpu runs it all on the CPU (the tests);
# in next, BENCH="command" replaces the bench step (the tests: the real one needs a GPU).
set -uo pipefail
here=.gpu/campaign
case "${1:-}" in
prepare)
  set -e
  src=${ARCHIVE:-${LCNN_SHARED_DATA:-../shared/data}/cifar10-jpeg.tar.gz}
  if [ -n "$(git status --porcelain --untracked-files=no -- . ':(exclude)results')" ]; then
    echo "error: the tree has uncommitted changes; commit first so the sha names the code that runs" >&2
    exit 2
  fi
  mkdir -p data "$here"
  cp "$src" data/cifar10-jpeg.tar.gz
  (cd data && md5sum cifar10-jpeg.tar.gz) >"$here/cifar10-jpeg.tar.gz.md5"
  git rev-parse HEAD >"$here/GIT_SHA"
  rm -rf "$here/site" && mkdir -p "$here/site"
  pkg=$(python3 -c 'import os, pyautoattack; print(os.path.dirname(pyautoattack.__file__))' 2>/dev/null || true)
  if [ -z "$pkg" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" pyautoattack==0.2.0
    (cd "$tmp" && python3 -m zipfile -e pyautoattack-*.whl .)
    pkg=$tmp/pyautoattack
  fi
  cp -r "$pkg" "$here/site/pyautoattack" && rm -rf "$here/site/pyautoattack/examples" "$here/site/pyautoattack/__pycache__"
  du -sh data/cifar10-jpeg.tar.gz "$here"
  echo "ready: sha $(cat "$here/GIT_SHA"); carry data/cifar10-jpeg.tar.gz and $here"
  ;;
run)
  budget=${2:-480}
  OUT=${OUT:-/tmp/out}
  mkdir -p "$OUT"
  # LCNN_SHARED_DATA: where the loader looks for cifar10-jpeg.tar.gz (extracted once into data/)
  export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/$here/site" LCNN_SHARED_DATA="$PWD/data"
  (cd data && md5sum -c "../$here/cifar10-jpeg.tar.gz.md5") || { echo "error: data/cifar10-jpeg.tar.gz missing or damaged" >&2; exit 2; }
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"
  python3 -m lcnn_core campaign --preset "${PRESET:-gpu-campaign}" --budget "$budget" \
    --concurrent "${CONCURRENT:-auto}" --max-concurrent auto --gpus "${GPUS:-0}" --pack "$OUT" \
    --git-sha "$(cat "$here/GIT_SHA")" ${TIMING:+$(printf -- '--timing %s ' $TIMING)} 2>&1 | tee "$OUT/campaign.log"
  ;;
bench)
  # the speed issue's GPU check (at most 4 minutes): full width, batch 128, 10,000 images (a fifth
  # of an epoch) per headline variant, the eager step and its CUDA-graph replay, then each phase of a
  # full-width evaluation on 500 images; the process's age at its first step is the start-up cost.
  # $OUT/bench/train_step_cuda.{csv,json} (the CSV rewritten after every row: a cut call keeps them)
  OUT=${OUT:-/tmp/out}
  export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/$here/site" LCNN_GIT_SHA="$(cat "$here/GIT_SHA")"
  (cd data && md5sum -c "../$here/cifar10-jpeg.tar.gz.md5") || { echo "error: data/cifar10-jpeg.tar.gz missing or damaged" >&2; exit 2; }
  # first the capture's own checks on the real GPU (a few seconds): no sync inside a replayed step
  # (torch.cuda.set_sync_debug_mode("error")), and captured weights = eager weights
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_step.py -k cuda 2>&1 | tail -15  # stdout: a call returns at most 8 files
  timeout "${BENCH_LIMIT:-200}" python3 benchmarks/train_step.py --epoch --width 64 --n-train 10000 --compile off \
    --capture both --variants standard lcnn gradreg lcnn_gradreg --eval-cost 500 --name train_step_cuda \
    --out "$OUT/bench"
  ;;
next)
  # issue 30: the bench of the speed issue first (cut at BENCH_S, default 240 s), then the campaign of
  # what the GPU table lacks in the time left before END (default 540 s after the start), less a
  # margin for this script's own steps; $OUT/next.txt records both phases
  t0=$(date +%s)
  end=${2:-540}
  OUT=${OUT:-/tmp/out}
  mkdir -p "$OUT"
  export OUT
  if [ -n "${BENCH:-}" ]; then timeout "${BENCH_S:-240}" bash -c "$BENCH"; else timeout "${BENCH_S:-240}" bash "$0" bench; fi \
    >"$OUT/bench.log" 2>&1
  echo "bench rc $? in $(( $(date +%s) - t0 )) s" | tee "$OUT/next.txt"
  left=$(( end - ($(date +%s) - t0) - ${MARGIN_S:-10} ))
  echo "campaign budget $left s" | tee -a "$OUT/next.txt"
  if [ "$left" -le 0 ]; then echo "error: no time left for the campaign" >&2; exit 2; fi
  PRESET=${PRESET:-h100-cifar10-jpeg} CONCURRENT=${CONCURRENT:-3} bash "$0" run "$left"
  rc=$?
  echo "campaign rc $rc at $(( $(date +%s) - t0 )) s" | tee -a "$OUT/next.txt"
  exit $rc
  ;;
*)
  echo "usage: $0 prepare | run [BUDGET_SECONDS] | bench | next [END_SECONDS]" >&2
  exit 2
  ;;
esac
