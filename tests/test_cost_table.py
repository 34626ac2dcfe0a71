"""report.cost_table on made-up benchmark files: paired rounds give an interval and a verdict
against the target; 'before' rows carry none; an old median-only file gives no interval."""
import json
from pathlib import Path

import pandas as pd

from lcnn_core import report


def _bench(tmp_path, name, table, **meta):
    (tmp_path / "benchmarks").mkdir(exist_ok=True)
    (tmp_path / "benchmarks" / f"train_step_{name}.json").write_text(
        json.dumps(dict(meta, table=table, provenance=dict(hardware="test cpu", git_sha="abcdef0123"))))


def test_cost_table_pairs_rounds_and_applies_each_target(tmp_path):
    std = [1.0, 1.1, 0.9, 1.05, 0.95]
    rows = [dict(width=16, variant="standard", step_s=1.0, round_s=std),
            dict(width=16, variant="lcnn", step_s=1.02, round_s=[1.02 * s for s in std]),      # under 1.15
            dict(width=16, variant="cure", step_s=6.0, round_s=[6.0 * s for s in std]),        # over 4
            dict(width=16, variant="lcnn_before", step_s=1.3, round_s=[1.3 * s for s in std])]
    _bench(tmp_path, "cpu", rows, rounds=5)
    _bench(tmp_path, "cuda_epoch", [dict(variant="standard", epoch_s=6.0), dict(variant="lcnn", epoch_s=17.0)],
           width=64, rounds=10)
    t = report.cost_table(tmp_path).set_index(["device", "variant"])
    assert t.loc[("cpu", "LCNN"), "against the target"] == "met"
    assert t.loc[("cpu", "CURE"), "against the target"] == "missed"
    assert t.loc[("cpu", "LCNN (before the speed work)"), "against the target"] == "–"
    assert t.loc[("cpu", "LCNN"), "× Standard (95% CI)"].startswith("1.02 [")
    assert "no interval" in t.loc[("cuda_epoch", "LCNN"), "× Standard (95% CI)"]
    assert t.loc[("cuda_epoch", "LCNN"), "against the target"] == "missed"


def test_ledger_says_which_benchmark_timed_the_code_before_the_speed_work(tmp_path):
    std = [1.0, 1.1, 0.9]
    _bench(tmp_path, "cpu", [dict(width=16, variant="standard", step_s=1.0, round_s=std),
                             dict(width=16, variant="lcnn", step_s=1.0, round_s=std)], rounds=3, compile="off")
    _bench(tmp_path, "cuda_epoch", [dict(variant="standard", epoch_s=6.0), dict(variant="lcnn", epoch_s=17.0)],
           width=64, rounds=10)
    scales = report.ledger(tmp_path).set_index("test").scale
    assert scales["time per step, LCNN / Standard"] == "test cpu, width 16, compile off, code abcdef0"
    assert scales["time per epoch, LCNN / Standard"] == "test cpu, width 64, code abcdef0 before the speed work"


def test_the_gpu_bench_rates_eager_and_captured_steps_each_against_their_own_standard(tmp_path):
    """train_step_cuda (scripts/gpu_campaign.sh bench): each variant eager and replayed as a CUDA graph."""
    rows = [dict(width=64, variant=v, capture_asked=c, epoch_s=t, mode="captured" if c else "eager")
            for v, c, t in [("standard", False, 1.0), ("lcnn", False, 2.4), ("standard", True, 0.4),
                            ("lcnn", True, 0.44)]]
    _bench(tmp_path, "cuda", rows, width=64)
    t = report.cost_table(tmp_path).set_index(["device", "variant"])
    assert t.loc[("cuda eager", "LCNN"), "× Standard (95% CI)"].startswith("2.4")
    assert t.loc[("cuda captured", "LCNN"), "× Standard (95% CI)"].startswith("1.1")
    assert t.loc[("cuda captured", "LCNN"), "against the target"] == "met"
    assert t.loc[("cuda eager", "LCNN"), "against the target"] == "missed"


def test_a_variant_whose_capture_failed_is_not_rated_as_captured(tmp_path):
    """The bench falls back to eager where capture fails: that row times no replay."""
    rows = [dict(width=64, variant=v, capture_asked=c, epoch_s=t, mode=m)
            for v, c, t, m in [("standard", False, 1.0, "eager"), ("lcnn", False, 2.4, "eager"),
                               ("standard", True, 0.4, "captured"), ("lcnn", True, 2.3, "eager")]]
    _bench(tmp_path, "cuda", rows, width=64)
    t = report.cost_table(tmp_path)
    assert list(zip(t.device, t.variant)) == [("cuda eager", "LCNN")]


def test_the_gpu_bench_command_runs_end_to_end_and_the_book_reads_what_it_writes(tmp_path):
    """scripts/gpu_campaign.sh bench's command line, on the CPU at a tiny size (MNIST-5k, width 8):
    a lent GPU's first minutes go to it, so it must not fail on an argument or a file name. On a
    CPU nothing is captured, so the rows say eager and the cost table rates only the eager step. A
    variant that fails (here one that does not exist) leaves a row saying why, and the others run.
    Width 8, not 4: on an AVX2-only CPU (no AVX-512), torch 2.13's CPU convolution corrupts the heap
    in the backward of a width-4 ResNet-18 fed a channels-last batch, which the loader's crop makes
    (a bus error, or "double free or corruption"; seen 2026-12-07, CHANGELOG); width 8 and NCHW
    batches run clean."""
    import subprocess
    import sys
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
    out = tmp_path / "benchmarks"
    cmd = [sys.executable, str(script), "--device", "cpu", "--epoch", "--width", "8", "--n-train", "128",
           "--compile", "off", "--capture", "both", "--variants", "standard", "nonsense", "lcnn", "--eval-cost", "4",
           "--dataset", "mnist5k", "--name", "train_step_cuda", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    csv = pd.read_csv(out / "train_step_cuda.csv")
    assert csv.capture_asked.tolist() == [False, True] * 3 and csv["mode"].tolist() == ["eager"] * 2 + ["failed"] * 2 + ["eager"] * 2
    assert csv.error.notna().tolist() == [False] * 2 + [True] * 2 + [False] * 2 and csv.epoch_s.isna().sum() == 2
    meta = json.loads((out / "train_step_cuda.json").read_text())
    assert meta["first_step_s"] > 0 and meta["eval_cost"]["samples"] == 4
    assert {"eval_switch_s", "geometry_loss_s", "geometry_logit_s", "geometry_margin_s", "pgd_s"} <= set(meta["eval_cost"])
    t = report.cost_table(tmp_path)
    assert list(zip(t.device, t.variant)) == [("cuda eager", "LCNN")]
