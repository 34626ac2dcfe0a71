"""Training: resume gives the same final weights, and bad input fails cleanly (one line,
non-zero exit, nothing partial written)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lcnn_core import train as train_mod
from lcnn_core.atomic import save_torch
from lcnn_core.cli import main
from lcnn_core.config import ConfigError, resolve
from lcnn_core.regularizers import reference_gradreg_coefficient
from lcnn_core.train import TrainingError, load_checkpoint, train

TINY = dict(dataset="mnist5k", n_train=96, n_test=40, arch="small_cnn", width=3, epochs=2, batch_size=32,
            augment=False, variant="lcnn")


def _weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


@pytest.mark.parametrize("variant, schedule", [("lcnn", "multistep"), ("lcnn_gradreg", "multistep"), ("adv", "multistep"),
                                               ("standard", "onecycle")])
def test_resume_after_interruption_gives_identical_final_weights(tmp_path, monkeypatch, variant, schedule):
    cfg = dict(TINY, variant=variant, lr_schedule=schedule)  # 2 epochs x 3 steps: drops inside epoch 2
    full = train(cfg, out=tmp_path / "a", progress=False)
    calls = {"n": 0}
    real = train_mod.test_accuracy

    def interrupt_in_epoch_2(model, data, batch_size=500):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed during epoch 2, after epoch 1's checkpoint
        return real(model, data, batch_size)

    monkeypatch.setattr(train_mod, "test_accuracy", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "b", progress=False)
    run_b = tmp_path / "b" / "custom" / f"{variant}-s0"
    assert load_checkpoint(run_b / "checkpoint.pt")["epoch"] == 1
    assert not (run_b / "provenance.json").exists()
    monkeypatch.setattr(train_mod, "test_accuracy", real)
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, out=tmp_path / "b", progress=False)
    resumed = train(cfg, out=tmp_path / "b", resume=True, progress=False)
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("variant", ["standard", "lcnn", "gradreg", "lcnn_gradreg", "cure", "softplus_wd", "adv"])
def test_every_training_variant_trains_one_epoch(tmp_path, variant):
    d = train(dict(TINY, variant=variant, epochs=1, n_train=64), out=tmp_path, progress=False)
    w = _weights(d)
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())


def test_seed_is_part_of_the_run_name_so_seeds_never_overwrite(tmp_path):
    d0 = train(dict(TINY, epochs=1, seed=0), out=tmp_path, progress=False)
    d1 = train(dict(TINY, epochs=1, seed=1), out=tmp_path, progress=False)
    assert d0 != d1 and (d0 / "model.pt").exists() and (d1 / "model.pt").exists()
    assert not torch.equal(_weights(d0)["0.weight"], _weights(d1)["0.weight"])


def test_run_directory_holds_config_history_model_and_provenance(tmp_path):
    import json
    import pandas as pd
    d = train(dict(TINY, epochs=1), out=tmp_path, progress=False)
    hist = pd.read_csv(d / "history.csv")
    assert {"train_loss", "test_acc", "mean_beta", "log10_prod_gamma", "epoch_time"} <= set(hist.columns)
    prov = json.loads((d / "provenance.json").read_text())
    assert {"git_sha", "git_dirty", "torch", "hardware", "preset", "seed", "started_utc", "finished_utc",
            "wall_time_s"} <= set(prov)


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    real = train_mod.training_loss
    calls = {"n": 0}

    def nan_in_epoch_2(model, x, y, cfg):
        calls["n"] += 1
        loss, logits = real(model, x, y, cfg)
        return (loss * float("nan") if calls["n"] == 5 else loss), logits  # 3 steps per epoch

    monkeypatch.setattr(train_mod, "training_loss", nan_in_epoch_2)
    with pytest.raises(TrainingError, match="epoch 2, step 2"):
        train(TINY, out=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "custom" / "lcnn-s0" / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def _cli(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "smoke", "--set", "epoch=3"], "did you mean 'epochs'"),
    (["--preset", "smoke", "--set", "epochs=many"], "epochs must be an integer"),
    (["--preset", "smoke", "--set", "lr=[1]"], "lr must be a number"),
    (["--preset", "smoke", "--variant", "relu"], "unknown training variant 'relu'"),
    (["--preset", "smoke", "--set", "dataset=cifar100", "--set", "num_classes=10"], "cifar100 has 100 classes"),
])
def test_bad_cli_input_gives_one_line_error_and_writes_nothing(tmp_path, capsys, args, message):
    code, err = _cli(capsys, "train", *args, "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"))
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "res").exists()


def test_missing_data_is_reported_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LCNN_SHARED_DATA", str(tmp_path / "absent"))
    code, err = _cli(capsys, "train", "--preset", "smoke", "--variant", "lcnn", "--set", "dataset=cifar10-jpeg",
                     "--set", f"data_root={tmp_path / 'nodata'}", "--out", str(tmp_path / "runs"), "--no-eval")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_corrupt_checkpoint_and_changed_config_are_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    run = out / "smoke" / "lcnn-s0"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, err = _cli(capsys, "train", "--preset", "smoke", "--variant", "lcnn", "--out", str(out), "--resume", "--no-eval")
    assert code == 2 and "corrupt" in err
    (run / "checkpoint.pt").unlink()
    cfg = resolve(dict(TINY))
    save_torch(dict(model={}, config=dict(cfg, lr=0.5)), run / "checkpoint.pt")
    code, err = _cli(capsys, "train", "--preset", "smoke", "--variant", "lcnn", "--out", str(out), "--resume", "--no-eval")
    assert code == 2 and "config differs in" in err and "lr" in err


class _Payload:
    """Unpickling this calls ``os.system``: what a hostile checkpoint would carry."""

    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path, capsys, monkeypatch):
    path = tmp_path / "runs" / "smoke" / "lcnn-s0" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    torch.save(dict(model={}, config=resolve(dict(TINY)), extra=_Payload()), path)
    ran = []
    monkeypatch.setattr("os.system", lambda cmd: ran.append(cmd) or 0)  # after pickling: a load must not call it
    with pytest.raises(train_mod.CheckpointError, match="refused") as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value) and not ran
    code, err = _cli(capsys, "train", "--preset", "smoke", "--variant", "lcnn", "--out", str(tmp_path / "runs"),
                     "--resume", "--no-eval")
    assert code == 2 and "refused" in err and err.count("\n") == 1 and not ran


def test_reference_gradreg_coefficient_matches_the_papers_convention():
    assert reference_gradreg_coefficient(1e-3, 128) == pytest.approx(0.0061, abs=1e-4)
    assert resolve({})["gradreg"] == pytest.approx(reference_gradreg_coefficient(1e-3, 128), rel=0.01)


def test_no_weight_decay_on_beta_and_gamma():
    from lcnn_core.models import small_cnn
    model = small_cnn("lcnn", width=2)
    opt = train_mod.optimizer_for(model, resolve({}))
    no_decay = opt.param_groups[1]
    assert no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith(("log_beta", "log_gamma")) for p in no_decay["params"])
    assert len(no_decay["params"]) == 6  # 3 log beta + 3 log gamma
    assert opt.param_groups[0]["weight_decay"] == 5e-4 and opt.param_groups[0]["params"]


# ---------------------------------------------------------------- learning-rate schedule
def _lrs(cfg, steps_per_epoch):
    """lr used by every optimiser step, and the lr logged after each epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg["lr"], momentum=0.9)
    sched = train_mod.scheduler_for(opt, cfg, steps_per_epoch)
    used, logged = [], []
    for _ in range(cfg["epochs"]):
        for _ in range(steps_per_epoch):
            used.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        logged.append(opt.param_groups[0]["lr"])
    return used, logged


def _old_per_epoch_lrs(cfg):
    """The schedule before issue 18: MultiStepLR over epochs, stepped once per epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg["lr"], momentum=0.9)
    milestones = sorted({max(1, round(f * cfg["epochs"])) for f in cfg["milestones"]})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=cfg["lr_decay"])
    used = []
    for _ in range(cfg["epochs"]):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return used


@pytest.mark.parametrize("epochs, steps", [(10, 31), (20, 31), (200, 3), (50, 7), (10, 40)])
def test_schedules_whose_epoch_milestones_are_distinct_are_unchanged_bit_for_bit(epochs, steps):
    cfg = resolve(dict(epochs=epochs))
    used, _ = _lrs(cfg, steps)
    old = _old_per_epoch_lrs(cfg)
    assert used == [lr for lr in old for _ in range(steps)]  # exact floats


@settings(max_examples=60, deadline=None)
@given(epochs=st.integers(1, 60), steps=st.integers(1, 80),
       fractions=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=3, unique=True))
def test_multistep_keeps_its_shape_at_any_length(epochs, steps, fractions):
    total = epochs * steps
    cfg = resolve(dict(epochs=epochs, milestones=fractions, lr=0.1, lr_decay=0.1))
    m = train_mod.milestone_steps(fractions, epochs, steps)
    assert m == sorted(set(m)) and len(m) == len(fractions)           # never two drops at once
    if total > 2 * len(fractions) / min(min(fractions), 1 - max(fractions)):   # room for every drop
        assert all(1 <= s < total for s in m)                             # none lost at the end
        used, _ = _lrs(cfg, steps)
        drops = sum(b < a for a, b in zip(used, used[1:]))
        assert drops == len(fractions)
        assert used[-1] == pytest.approx(0.1 * 0.1 ** len(fractions))
        for f, s in zip(sorted(fractions), m):                            # each near f of the run
            assert abs(s - f * total) <= max(steps / 2, 1) + len(fractions)


def test_five_epochs_now_have_both_drops_and_end_at_a_hundredth():
    cfg = resolve(dict(epochs=5))
    m = train_mod.milestone_steps(cfg["milestones"], 5, 31)
    assert m == [round(0.75 * 155), round(0.875 * 155)] == [116, 136]
    used, logged = _lrs(cfg, 31)
    assert used[115] == 0.1 and used[116] == pytest.approx(0.01) and used[136] == pytest.approx(0.001)
    assert logged[-1] == pytest.approx(0.001)
    assert _old_per_epoch_lrs(cfg)[-1] == pytest.approx(0.01)  # the artefact this fixes


def test_onecycle_rises_then_falls_and_old_checkpoints_are_refused(tmp_path):
    cfg = resolve(dict(epochs=4, lr_schedule="onecycle", onecycle_warmup=0.25, lr=0.2))
    used, _ = _lrs(cfg, 10)
    peak = max(range(len(used)), key=used.__getitem__)
    assert peak in (9, 10) and used[peak] == pytest.approx(0.2) and used[0] == pytest.approx(0.2 / 25)
    assert used[-1] < 1e-4 and all(b <= a for a, b in zip(used[peak:], used[peak + 1:]))
    with pytest.raises(ConfigError):
        resolve(dict(lr_schedule="cosine"))
    run = tmp_path / "custom" / "lcnn-s0"
    run.mkdir(parents=True)
    train_mod.save_torch(dict(model={}, config=resolve(TINY), epoch=1), run / "checkpoint.pt")
    with pytest.raises(train_mod.CheckpointError, match="per-epoch"):
        train(TINY, out=tmp_path, resume=True, progress=False)


def test_adversarial_training_draws_a_new_random_start_each_batch(monkeypatch):
    """Each batch's PGD start is new (not seed 0 every time), and the run's seed fixes the sequence."""
    from lcnn_core import attacks
    from lcnn_core.models import build_model
    seen = []
    real = attacks.pgd_l2

    def spy(*args, seed=0, **kw):
        seen.append(seed)
        return real(*args, seed=seed, **kw)

    monkeypatch.setattr(attacks, "pgd_l2", spy)
    cfg = resolve(dict(TINY, variant="adv"))
    model = build_model("small_cnn", "standard", 10, 3, 1, 28)
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    runs = []
    for _ in range(2):
        torch.manual_seed(cfg["seed"])
        seen.clear()
        for _ in range(3):
            train_mod.training_loss(model, x, y, cfg)
        runs.append(list(seen))
    assert len(set(runs[0])) == 3
    assert runs[0] == runs[1]


def test_skip_current_skips_only_results_of_this_code_from_a_clean_tree_with_the_same_config(tmp_path, capsys):
    import json
    import yaml
    from lcnn_core.cli import is_current
    from lcnn_core.config import load_preset
    from lcnn_core.provenance import code_fingerprint
    preset = load_preset("smoke")
    cfg = resolve(dict(variant="lcnn", seed=0), base=preset["config"])
    res = tmp_path / "res" / "smoke" / "lcnn-s0"
    res.mkdir(parents=True)

    def publish(fingerprint=code_fingerprint(), dirty=False, **change):
        (res / "config.yaml").write_text(yaml.safe_dump(dict(cfg, preset="smoke", **change), sort_keys=False))
        (res / "provenance.json").write_text(json.dumps(dict(code_fingerprint=fingerprint, git_dirty=dirty)))
        (res / "geometry.json").write_text(json.dumps(dict(provenance=dict(code_fingerprint=fingerprint))))

    publish()
    assert is_current(res, cfg, "smoke")
    code, out = _cli(capsys, "train", "--preset", "smoke", "--variant", "lcnn", "--seed", "0", "--skip-current",
                     "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"))
    assert code == 0 and not (tmp_path / "runs").exists()
    for stale in (dict(fingerprint="0" * 16), dict(dirty=True), dict(dirty=None), dict(lr=cfg["lr"] / 2)):
        publish(**stale)
        assert not is_current(res, cfg, "smoke"), stale
    assert not is_current(tmp_path / "res" / "smoke" / "standard-s0", cfg, "smoke")
