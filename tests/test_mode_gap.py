"""The mode-gap study (lcnn_core.studies.mode_gap): its two batch-norm readouts against hand-computed
batch statistics, and the study end to end on the smoke preset."""
import json

import pandas as pd
import pytest
import torch
from torch import nn

from lcnn_core.cli import main
from lcnn_core.layers import ClippedBatchNorm2d
from lcnn_core.studies import mode_gap
from lcnn_core import train as train_mod


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))


def _data(n=23):
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g),
            torch.randint(0, 4, (n,), generator=g))


def test_recalibrate_averages_the_batch_statistics_and_leaves_the_model_alone():
    net, (x, _) = _net(), _data()
    before = net[1].running_mean.clone()
    recal = mode_gap.recalibrate(net, x, batch_size=7)  # batches of 7, 7, 7 and 2 images
    with torch.no_grad():
        z = net[0](x.float() / 255)
    means = [b.mean((0, 2, 3)) for b in z.split(7)]
    variances = [b.transpose(0, 1).flatten(1).var(1, unbiased=True) for b in z.split(7)]
    torch.testing.assert_close(recal[1].running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(recal[1].running_var, torch.stack(variances).mean(0))
    assert not recal.training and torch.equal(net[1].running_mean, before)


def test_recalibrating_clipped_batch_norms_keeps_their_fixed_point():
    """With the clip active (small gamma), statistics at their fixed point under the layers' own
    training-mode passes stay there: the clip of the first recalibration batch reads them, not reset ones."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), ClippedBatchNorm2d(4, gamma=0.01), nn.Conv2d(4, 4, 3),
                        ClippedBatchNorm2d(4, gamma=0.01), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x, _ = _data(64)
    bns = [net[1], net[3]]
    with torch.no_grad():  # the fixed point: repeated plain-average passes of the network's own training forward
        for _ in range(6):
            for bn in bns:
                bn.num_batches_tracked.zero_()
                bn.momentum = None
            net.train()
            for xb in (x.float() / 255).split(16):
                net(xb)
    net.eval()
    recal = mode_gap.recalibrate(net, x, batch_size=16)
    for bn, rb in zip(bns, (recal[1], recal[3])):
        assert float(torch.clamp(bn.gamma * bn.scale(), max=1.0).detach()) < 0.5  # the clip is active
        torch.testing.assert_close(rb.running_var, bn.running_var, rtol=0.02, atol=0)
        torch.testing.assert_close(rb.running_mean, bn.running_mean, rtol=0.02, atol=1e-6)


def test_batch_stats_accuracy_normalises_by_the_batch_and_keeps_the_running_statistics():
    net, (x, y) = _net(), _data()
    running = net[1].running_var.clone()
    with torch.no_grad():  # the oracle: batch norm written out with each batch's biased statistics
        correct = 0
        for xb, yb in zip((x.float() / 255).split(10), y.split(10)):
            z = net[0](xb)
            mu, var = z.mean((0, 2, 3), keepdim=True), z.var((0, 2, 3), unbiased=False, keepdim=True)
            logits = net[2:]((z - mu) / torch.sqrt(var + net[1].eps))
            correct += (logits.argmax(1) == yb).sum().item()
    assert mode_gap.batch_stats_accuracy(net, x, y, batch_size=10) == pytest.approx(100 * correct / len(y))
    assert torch.equal(net[1].running_var, running)


def test_the_study_on_the_smoke_preset(tmp_path):
    settings = dict(preset="smoke", runs=["lcnn-s0"], batch_size=64)
    table = mode_gap.run(settings, runs=tmp_path / "runs", out=tmp_path / "out", log=lambda m: None)
    row = table.iloc[0]
    model, cfg, data = train_mod.load_run(tmp_path / "runs" / "smoke" / "lcnn-s0")
    assert all(isinstance(m, ClippedBatchNorm2d) for m in mode_gap.batchnorms(model)) and mode_gap.batchnorms(model)
    assert row.eval == pytest.approx(round(train_mod.test_accuracy(model, data, 64)[1], 2))
    hist = pd.read_csv(tmp_path / "runs" / "smoke" / "lcnn-s0" / "history.csv")
    assert row.train_mode_train == pytest.approx(round(hist.train_acc.iloc[-1], 2))
    for col in ("train_eval", "batch_stats", "recalibrated"):
        assert 0 <= row[col] <= 100
    assert pd.read_csv(tmp_path / "out" / "summary.csv").run.tolist() == ["lcnn-s0"]
    assert (tmp_path / "out" / "provenance.json").is_file()
    trained = json.loads((tmp_path / "runs" / "smoke" / "lcnn-s0" / "provenance.json").read_text())
    assert row.trained_fingerprint == trained["code_fingerprint"]  # which code trained the weights it measured


def test_an_unknown_run_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["mode-gap", "--set", "runs=[lcnn-lam5-e5-s0]", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lcnn-lam5-e5-s0" in err[0]
    assert not out.exists() and not (tmp_path / "runs").exists()
