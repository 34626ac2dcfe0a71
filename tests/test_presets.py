"""A preset fully describes its results folder: results/<preset>/ holds only runs that
`python -m lcnn_core train --preset <preset>` makes (config.preset_runs), each trained with the
config the preset gives it; a preset whose regeneration is under way holds some of them (the
reproducing page counts the rest). Grids expand as documented; bad grids and study presets are
refused."""
from pathlib import Path

import pytest
import yaml

from lcnn_core.cli import main
from lcnn_core.config import ConfigError, load_preset, load_study, preset_names, preset_runs, resolve

RESULTS = Path(__file__).resolve().parent.parent / "results"
# Keys that describe the machine, not the run (train._differences ignores them on resume too).
MACHINE = {"device", "amp", "channels_last", "data_root"}
TRAINING_PRESETS = [n for n in preset_names() if "study" not in yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "lcnn_core" / "presets" / f"{n}.yaml").read_text())]


@pytest.mark.parametrize("name", [n for n in TRAINING_PRESETS if (RESULTS / n).is_dir()])
def test_committed_results_are_runs_of_their_preset(name):
    preset = load_preset(name)
    runs = dict(preset_runs(preset))
    committed = sorted(d.name for d in (RESULTS / name).iterdir() if (d / "config.yaml").exists())
    extra = sorted(set(committed) - set(runs))
    assert committed and not extra, f"results/{name}/ holds runs its preset does not make: {extra}"
    for run in committed:
        want = resolve(runs[run], base=preset["config"])
        got = yaml.safe_load((RESULTS / name / run / "config.yaml").read_text())
        # keys added to DEFAULTS after a run was made are absent from its config.yaml; evaluation
        # settings (eval_*) may move ahead of the committed files (the new eps grids of issue 18): a
        # run is the same training, and the stale evaluation shows as a fingerprint/settings mismatch
        # (python -m lcnn_core fingerprints), not as a different run
        diff = {k: (got[k], want[k]) for k in set(got) & set(want) - MACHINE
                if got[k] != want[k] and not k.startswith("eval_")}
        assert not diff, f"results/{name}/{run}: config differs from the preset's: {diff}"


def test_ablation_grid_is_lambda_by_epochs_with_the_names_the_book_reads():
    runs = preset_runs(load_preset("ablation-mnist"))
    assert [n for n, _ in runs][:4] == ["lcnn-lam0-e5-s0", "lcnn-lam1e-3-e5-s0", "lcnn-lam1e-2-e5-s0",
                                        "lcnn-lam1e-1-e5-s0"]
    cfgs = {n: resolve(o, base=load_preset("ablation-mnist")["config"]) for n, o in runs}
    assert cfgs["lcnn-lam1e-2-e20-s0"]["lam_beta"] == cfgs["lcnn-lam1e-2-e20-s0"]["lam_gamma"] == 0.01
    assert cfgs["lcnn-lam1e-2-e20-s0"]["epochs"] == 20 and len(runs) == 8


def test_variant_and_seed_outside_the_preset_still_make_a_run():
    """--variant cure --seed 0 on cpu-default (scripts/cpu_runs.sh) and a new seed of every model."""
    preset = load_preset("cpu-default")
    assert preset_runs(preset, variants=["cure"], seeds=[0]) == [("cure-s0", dict(variant="cure", seed=0))]
    assert [n for n, _ in preset_runs(load_preset("smoke"), seeds=[5])] == ["standard-s5", "lcnn-s5"]


@pytest.mark.parametrize("grid, message", [
    ([{"nme": "x"}], "unknown grid key"),
    ([{"name": "{variant}-{lam}"}], "unknown"),
    ([{"name": "same"}], "two different runs"),
    ([{"axes": {"lam": {"keys": ["lam_beta"]}}}], "needs non-empty keys and values"),
    ([{"axes": {"x": {"keys": ["no_such_key"], "values": [1]}}, "name": "r{x}-{seed}{variant}"}], "unknown config key"),
])
def test_bad_grids_are_refused(grid, message):
    preset = dict(load_preset("smoke"), grid=grid)
    with pytest.raises(ConfigError, match=message):
        preset_runs(preset)


def test_train_refuses_a_study_preset_and_a_run_the_preset_lacks(capsys, tmp_path):
    assert main(["train", "--preset", "yao", "--out", str(tmp_path)]) == 2
    assert "python -m lcnn_core yao" in capsys.readouterr().err
    assert main(["train", "--preset", "smoke", "--run", "nope-s0", "--out", str(tmp_path)]) == 2
    assert "no run named nope-s0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_study_presets_extend_and_refuse_unknown_settings():
    full, tiny = load_study("yao"), load_study("yao-tiny")
    assert set(tiny["settings"]) == set(full["settings"]) and tiny["settings"]["epochs"] < full["settings"]["epochs"]
    assert full["settings"]["landscape_alphas"][6] == -0.3999999999999999  # numpy.linspace(-1, 1, 21), exactly
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_study("yao", {"epoch": 3})
    with pytest.raises(ConfigError, match="training preset"):
        load_study("smoke")


@pytest.mark.parametrize("name", TRAINING_PRESETS)
def test_every_training_preset_is_in_the_reproducing_table_and_the_readme(name):
    """A reader chooses a preset from reproducing.md's table and README's list: a preset missing there
    (the two accuracy designs were, for a while) is one nobody can find."""
    root = Path(__file__).resolve().parent.parent
    table = [line for line in (root / "book" / "reproducing.md").read_text().splitlines() if line.startswith("| `")]
    assert any(line.startswith(f"| `{name}` |") for line in table), f"{name} has no row in reproducing.md's preset table"
    assert f"`{name}`" in (root / "README.md").read_text(), f"README does not name {name}"
