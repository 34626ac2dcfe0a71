"""Scale-out: data-parallel training (torch.distributed, gloo, 2 CPU processes) reproduces
single-process training on the same global batch, only rank 0 writes, a checkpoint resumes
under another number of processes, and the sweep runner skips finished runs and resumes
interrupted ones. Oracle: the single-process run of lcnn_core.train.train."""
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lcnn_core import distributed
from lcnn_core import train as train_mod
from lcnn_core.cli import main
from lcnn_core.config import load_preset, resolve
from lcnn_core.data import DataError, Loader
from lcnn_core.layers import ClippedBatchNorm2d
from lcnn_core.sweep import parse_devices
from lcnn_core.train import load_checkpoint, train

# 3 steps of 32 per epoch (16 per rank), with crop + flip so the shared augmentation RNG is exercised
TINY = dict(dataset="mnist5k", n_train=96, n_test=40, arch="small_cnn", width=3, epochs=2, batch_size=32,
            augment=True, flip=True)
SMOKE_SET = [f"{k}={v}" for k, v in TINY.items() if k != "dataset"]

PARAM_ATOL = 1e-4  # float32, a different summation order (measured: <= 2e-5)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread each (the parent and the two ranks share two cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _interrupted_in_epoch_2(cfg, out, preset):
    """Train ``cfg`` until the test-set pass of epoch 2, as if killed there: epoch 1's checkpoint stays."""
    real, calls = train_mod.test_accuracy, {"n": 0}

    def interrupt(model, data, batch_size=500):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(model, data, batch_size)

    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.setattr(train_mod, "test_accuracy", interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out=out, preset=preset, progress=False)


def _ddp_worker(rank, world_size, port, root, resume_cfg):
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    root, lines = Path(root), []
    # a one-process checkpoint, finished by both ranks (one shared folder)
    train(resume_cfg, out=root / "shared", preset="smoke", resume=True, log=lines.append)
    (root / f"log{rank}.txt").write_text("\n".join(lines))
    # the command line, fresh runs (standard, lcnn); each rank its own --out: rank 1's must stay empty
    sets = [a for s in SMOKE_SET for a in ("--set", s)]
    assert main(["train", "--preset", "smoke", "--out", str(root / f"rank{rank}"), "--no-eval", "--quiet"] + sets) == 0


def _model(run_dir):
    return torch.load(Path(run_dir) / "model.pt", weights_only=True)["model"]


def _assert_same_training(a, b):
    """Parameters, BN running statistics and sigma within float tolerance. The power-iteration
    vector u is an iterate, not a learned quantity: after the converged eval-mode refresh it
    amplifies 1e-6 weight differences (small singular gap), so only its direction is checked."""
    assert a.keys() == b.keys()
    worst = 0.0
    for k in a:
        if not a[k].is_floating_point():
            assert torch.equal(a[k], b[k]), k
        elif k.endswith(".u"):
            assert torch.nn.functional.cosine_similarity(a[k].flatten(), b[k].flatten(), dim=0) > 0.999, k
        else:
            worst = max(worst, float((a[k] - b[k]).abs().max()))
    assert worst < PARAM_ATOL
    return worst


def _smoke(variant):
    return resolve(dict(TINY, variant=variant), base=load_preset("smoke")["config"])


@pytest.fixture(scope="module")
def ddp_root(tmp_path_factory):
    """Two gloo processes (torch.multiprocessing): resume a one-process lcnn_gradreg checkpoint,
    then `train --preset smoke` (standard, lcnn) through the command line."""
    root = tmp_path_factory.mktemp("ddp")
    _interrupted_in_epoch_2(_smoke("lcnn_gradreg"), root / "shared", "smoke")
    assert load_checkpoint(root / "shared" / "smoke" / "lcnn_gradreg-s0" / "checkpoint.pt")["epoch"] == 1
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(root), _smoke("lcnn_gradreg")), nprocs=2)
    return root


@pytest.mark.parametrize("variant", ["standard", "lcnn"])
def test_two_process_ddp_gives_the_single_process_weights(ddp_root, tmp_path, variant):
    single = train(_smoke(variant), out=tmp_path, preset="smoke", progress=False)
    ddp_dir = ddp_root / "rank0" / "smoke" / single.name
    assert {p.name for p in ddp_dir.iterdir()} == {p.name for p in single.iterdir()}
    worst = _assert_same_training(_model(single), _model(ddp_dir))
    print(f"{variant}: max |w_ddp - w_single| = {worst:.1e}")


def test_only_rank_0_writes_files_and_logs(ddp_root):
    assert (ddp_root / "rank0" / "smoke" / "lcnn-s0" / "provenance.json").exists()
    assert not (ddp_root / "rank1").exists()
    assert "resuming after epoch 1" in (ddp_root / "log0.txt").read_text()
    assert (ddp_root / "log1.txt").read_text() == ""


def test_one_process_checkpoint_resumes_on_two_processes(ddp_root, tmp_path):
    """lcnn_gradreg: double backprop through the global batch norm; the single-process run as oracle."""
    full = train(_smoke("lcnn_gradreg"), out=tmp_path, preset="smoke", progress=False)
    worst = _assert_same_training(_model(full), _model(ddp_root / "shared" / "smoke" / "lcnn_gradreg-s0"))
    print(f"lcnn_gradreg, resumed on 2 processes: max |w_ddp - w_single| = {worst:.1e}")


def test_sweep_skips_a_finished_run_and_resumes_an_interrupted_one(tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    preset = load_preset("smoke")  # variants standard, lcnn; seed 0
    base = dict(TINY, epochs=2, n_train=64)
    standard = train(resolve(dict(base, variant="standard"), base=preset["config"]), out=out, preset="smoke",
                     progress=False)
    stamp = (standard / "model.pt").stat().st_mtime_ns
    _interrupted_in_epoch_2(resolve(dict(base, variant="lcnn"), base=preset["config"]), out, "smoke")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sets = [a for k, v in base.items() if k != "dataset" for a in ("--set", f"{k}={v}")]
    code = main(["sweep", "--preset", "smoke", "--gpus", "cpu", "--out", str(out), "--no-eval"] + sets)
    printed = capsys.readouterr().out
    assert code == 0
    assert "standard-s0: finished, skipped" in printed and "lcnn-s0: resume on CPU" in printed
    assert (standard / "model.pt").stat().st_mtime_ns == stamp
    assert not (out / "smoke" / "logs" / "standard-s0.log").exists()
    log = (out / "smoke" / "logs" / "lcnn-s0.log").read_text()
    assert "resuming after epoch 1" in log
    assert (out / "smoke" / "lcnn-s0" / "provenance.json").exists()
    # a second sweep has nothing left to do
    assert main(["sweep", "--preset", "smoke", "--gpus", "cpu", "--out", str(out), "--no-eval"] + sets) == 0
    assert "lcnn-s0: finished, skipped" in capsys.readouterr().out


def test_loader_shards_union_is_the_single_process_batch():
    x = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8)
    y = torch.arange(40)

    def batches(shard):
        gen = torch.Generator().manual_seed(3)
        return list(Loader(x, y, 8, shuffle=True, augment=True, pad=2, drop_last=True, generator=gen, shard=shard))

    whole = batches((0, 1))
    parts = [batches((r, 2)) for r in range(2)]
    for k, (xb, yb) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][k][0], parts[1][k][0]]), xb)
        assert torch.equal(torch.cat([parts[0][k][1], parts[1][k][1]]), yb)
    with pytest.raises(DataError, match="split evenly"):
        Loader(x, y, 9, drop_last=True, shard=(0, 2))


def test_global_batch_norm_keeps_the_clipped_layer_and_its_state_dict():
    from lcnn_core.models import small_cnn
    model = small_cnn("lcnn", width=2)
    keys = model.state_dict().keys()
    distributed.sync_batch_norm(model)
    clipped = [m for m in model.modules() if isinstance(m, ClippedBatchNorm2d)]
    assert len(clipped) == 3 and all(isinstance(m, distributed.GlobalBatchNorm2d) for m in clipped)
    assert model.state_dict().keys() == keys


@pytest.mark.parametrize("spec, slots", [("0,1", [("0", "cuda"), ("1", "cuda")]), ("cpu", [("", "cpu")]),
                                         ("cpu:2", [("", "cpu")] * 2)])
def test_sweep_device_list(spec, slots):
    assert parse_devices(spec) == slots


@pytest.mark.parametrize("spec", ["gpu", "0,0", "cpu:0", "1,x"])
def test_bad_sweep_device_list_gives_one_line_error(tmp_path, capsys, spec):
    code = main(["sweep", "--preset", "smoke", "--gpus", spec, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()
