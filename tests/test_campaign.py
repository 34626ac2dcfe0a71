"""The campaign end to end on the CPU (plan, two concurrent runs, one cut off at the budget,
evaluation, packing, unpacking), its pieces, and the Kaggle/Colab host detection in a simulated
environment."""
import dataclasses
import json
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from lcnn_core import campaign, hosted, timing
from lcnn_core import train as train_mod
from lcnn_core.cli import main
from lcnn_core.config import load_preset
from lcnn_core.report import load_runs

TINY_CONFIG = dict(dataset="mnist5k", n_train=128, n_test=64, arch="small_cnn", width=4, epochs=2, batch_size=64,
                   augment=False, eval_samples=16, eval_pgd_samples=16, eval_pgd_steps=2, eval_batch_size=16,
                   eval_pgd_eps=[0.5])
# The planner believes these per-epoch times; 'long' really takes far longer than its budget.
TINY_TIMINGS = {"from": [], "default_epoch_s": {"standard": 0.2, "lcnn": 1e-4}, "default_images": 128,
                "startup_s": 5, "eval_s": 8, "pack_s": 3, "epoch_overhead_s": 0}


QUICK = dict(priority=1, variants=["standard"], seeds=[0], name="quick")
NEVER = dict(priority=2, variants=["standard"], seeds=[1], name="never",
             axes=dict(e=dict(keys=["epochs"], values=[100000])))  # never fits any budget


def _tiny_preset(path, description, grid):
    path.write_text(yaml.safe_dump(dict(description=description, config=TINY_CONFIG, timings=TINY_TIMINGS,
                                        variants=["standard"], seeds=[0], grid=grid)))
    return path


def _preset(tmp_path):
    long = dict(priority=1, variants=["lcnn"], seeds=[0], name="long", axes=NEVER["axes"])
    return _tiny_preset(tmp_path / "tiny-campaign.yaml", "two runs that fit, one that does not", [QUICK, long, NEVER])


def test_campaign_end_to_end_on_cpu(tmp_path, capsys):
    preset = _preset(tmp_path)
    out, results, pack = tmp_path / "runs", tmp_path / "results", tmp_path / "OUT"
    args = ["campaign", "--preset", str(preset), "--budget", "40", "--concurrent", "2", "--gpus", "cpu",
            "--out", str(out), "--results", str(results), "--pack", str(pack), "--git-sha", "f" * 40]
    assert main(args) == 0
    log = capsys.readouterr().out
    # the plan came first, with 'never' left out and the other two side by side
    assert log.index("plan before preparing the data") < log.index("quick: start")
    plan = log[:log.index("quick: start")]
    assert "never" in plan and "does not fit" in plan and "slot 2" in plan
    assert "estimated GPU-hours" in plan

    tiny = results / "tiny-campaign"
    assert campaign.published(results, "tiny-campaign", "quick")
    assert not (tiny / "long").exists()  # never shown as a result
    progress = json.loads((tiny / "unfinished" / "long" / "progress.json").read_text())
    assert progress["status"] == "stopped at its deadline" and 0 < progress["epochs_done"] < 100000
    assert (tiny / "unfinished" / "long" / "history.csv").is_file()
    (call,) = json.loads((tiny / "campaign.json").read_text())["calls"]
    assert call["concurrent"] == 2 and call["git_sha"] == "f" * 40 and call["wall_s"] < 40
    assert {r["name"]: r["status"] for r in call["runs"]} == {"quick": "finished", "long": "stopped at its deadline"}
    assert json.loads((tiny / "quick" / "provenance.json").read_text())["git_sha"] == "f" * 40

    archive = pack / "campaign-tiny-campaign.tar.gz"
    with tarfile.open(archive) as tf:
        names = set(tf.getnames())
    assert {"tiny-campaign/quick/geometry.json", "tiny-campaign/unfinished/long/progress.json",
            "tiny-campaign/campaign.json", "_logs/quick.log"} <= names
    assert not any(n.endswith(".pt") for n in names)
    assert len(list(pack.iterdir())) == 2  # the archive and its md5

    # unpacking into an empty results folder rebuilds the same files; result readers see 'quick' alone
    fresh = tmp_path / "fresh" / "results"
    assert main(["campaign", "--unpack", str(archive), "--results", str(fresh), "--out", str(tmp_path / "r2")]) == 0
    for f in ("quick/geometry.json", "quick/pgd.json", "unfinished/long/progress.json", "campaign.json"):
        assert (fresh / "tiny-campaign" / f).read_bytes() == (tiny / f).read_bytes()
    assert list(load_runs("tiny-campaign", root=fresh)["run"]) == ["quick"]

    # the next call skips the finished run and would restart 'long' from its checkpoint's epoch
    assert main(["campaign", "--preset", str(preset), "--budget", "40", "--gpus", "cpu", "--plan-only",
                 "--out", str(out), "--results", str(results)]) == 0
    plan = capsys.readouterr().out
    assert "finished, skipped" in plan.splitlines()[[i for i, l in enumerate(plan.splitlines()) if " quick " in l][0]]


def test_unpack_refuses_a_damaged_archive_and_keeps_results(tmp_path, capsys):
    root = tmp_path / "res" / "p" / "a"
    root.mkdir(parents=True)
    for f in ("provenance.json", "geometry.json"):
        (root / f).write_text("{}")
    (tmp_path / "res" / "p" / "campaign.json").write_text(json.dumps({"calls": [{"call": "x", "runs": []}]}))
    archive = campaign.pack_results(tmp_path / "res", "p", ["a"], tmp_path / "out")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert main(["campaign", "--unpack", str(archive), "--results", str(tmp_path / "new")]) == 2
    assert "md5" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_unpack_refuses_links_and_paths_outside(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        info = tarfile.TarInfo("p/../../outside.txt")
        info.size = 0
        tf.addfile(info)
    (tmp_path / "evil.tar.gz.md5").write_text(f"{campaign.md5_of(evil)}  evil.tar.gz\n")
    with pytest.raises(campaign.CampaignError):
        campaign.unpack(evil, results=tmp_path / "res")
    assert not (tmp_path / "outside.txt").exists()


def test_schedule_is_a_priority_list_schedule_that_leaves_out_what_does_not_fit():
    def run(name, total):
        r = campaign.Run(name, 1, {}, {})
        r.estimate = dict(total_s=total, startup_s=2, epoch_s=3, eval_s=4)
        return r
    runs = [run("a", 50), run("b", 80), run("c", 60), run("d", 30), run("e", 10)]
    placed = campaign.schedule(runs, slots=2, available_s=100)
    # a on slot 1 (0-50), b on slot 2 (0-80), c would end at 110: out; d on slot 1 (50-80); e (80-90)
    assert placed == {"a": (0, 0, 50, False), "b": (1, 0, 80, False), "d": (0, 50, 80, False),
                      "e": (0, 80, 90, False)}
    # resumable: c starts anyway and trains to the end on slot 1, d likewise on slot 2; e fits nowhere
    placed = campaign.schedule(runs, slots=2, available_s=100, resumable=True)
    assert placed == {"a": (0, 0, 50, False), "b": (1, 0, 80, False), "c": (0, 50, 100, True),
                      "d": (1, 80, 100, True)}


def test_estimates_use_measured_epochs_scaled_by_images_and_sharing(tmp_path):
    d = tmp_path / "results" / "src" / "lcnn-s0"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(dict(variant="lcnn", arch="resnet18", width=64, batch_size=128,
                                                       dataset="cifar10-jpeg", n_train=None)))
    (d / "provenance.json").write_text(json.dumps(dict(hardware="NVIDIA H100 80GB HBM3")))
    (d / "history.csv").write_text("epoch,epoch_time\n1,20\n2,18\n3,19\n")
    preset = load_preset("gpu-campaign")
    timings = dict(campaign.timings_for(preset), **{"from": ["src"], "epoch_overhead_s": 0})
    rows = campaign.measured_epochs(tmp_path / "results", "gpu-campaign", timings)
    run = next(r for r in campaign.campaign_runs(preset) if r.name == "lcnn-lam1e-2-s0")
    run.remaining = 50
    e3 = campaign.estimate(run, rows, timings, 3, "NVIDIA H100 80GB HBM3", None)
    assert e3["epoch_s"] == 19 and e3["source"].startswith("history")
    e6 = campaign.estimate(run, rows, timings, 6, "NVIDIA H100 80GB HBM3", None)
    assert e6["epoch_s"] == 38  # unprobed: twice the processes of the source, twice the time
    t4 = campaign.estimate(run, rows, timings, 3, "Tesla T4", None)
    assert t4["epoch_s"] == 190  # GPU_TIME's assumed ratio
    probe = dict(levels=[dict(concurrent=1, per_process_images_per_s=100.0),
                         dict(concurrent=3, per_process_images_per_s=50.0)])
    assert campaign.estimate(run, rows, timings, 1, "NVIDIA H100", probe)["epoch_s"] == pytest.approx(9.5)
    # a probe of this run on this GPU that trained twice as fast as the histories say: every estimate x 0.5
    fast = dict(run="lcnn-lam1e-2-s0", hardware="NVIDIA H100",
                levels=[dict(concurrent=3, per_process_images_per_s=50000 / 9.5)])
    assert campaign.probe_scale(fast, [run], rows, timings, 3, "NVIDIA H100") == pytest.approx(0.5)
    assert campaign.probe_scale(fast, [run], rows, timings, 3, "Tesla T4") is None  # another GPU's probe
    cure = next(r for r in campaign.campaign_runs(preset) if r.name == "cure-s0")
    cure.remaining = 50
    assert campaign.estimate(cure, rows, timings, 1, "NVIDIA H100", None)["source"] == "default (not measured)"


REPO_RESULTS = Path(__file__).resolve().parent.parent / "results"
H200_RUNS = ("standard-s1", "standard-s2", "lcnn-lam1e-3-s1", "lcnn-lam1e-2-s1")


def _h200_call(tmp_path):
    """A results folder holding only what the lent H200 call of issue 30 returned: its campaign.json,
    its four runs, and the eager GPU benchmark it ran first."""
    res = tmp_path / "results"
    src = REPO_RESULTS / "h100-cifar10-jpeg"
    (res / "h100-cifar10-jpeg").mkdir(parents=True)
    shutil.copy2(src / "campaign.json", res / "h100-cifar10-jpeg" / "campaign.json")
    for run in H200_RUNS:
        shutil.copytree(src / run, res / "h100-cifar10-jpeg" / run)
    (res / "benchmarks").mkdir()
    shutil.copy2(REPO_RESULTS / "benchmarks" / "train_step_cuda_epoch.json", res / "benchmarks")
    (call,) = json.loads((src / "campaign.json").read_text())["calls"]
    return res, {r["name"]: r["wall_s"] for r in call["runs"]}


def test_planner_replays_the_h200_call_within_a_quarter(tmp_path):
    """Issue 30: that call planned 234 s for a 10-epoch LCNN run (3 processes on the H200) and measured
    389-399 s. Planned again from its own record, the estimate lands within 25 % of what it measured."""
    res, measured = _h200_call(tmp_path)
    preset = load_preset("h100-cifar10-jpeg")
    timings = campaign.timings_for(preset)
    learned = timing.learn(res)
    assert {r["hardware"] for r in learned.records} == {"NVIDIA H200"} and len(learned.records) == 4
    runs = {r.name: r for r in campaign.campaign_runs(preset)}
    for name, done in (("lcnn-lam1e-3-s2", ("lcnn-lam1e-3-s1", "lcnn-lam1e-2-s1")),
                       ("standard-s1", ("standard-s1", "standard-s2"))):
        run = dataclasses.replace(runs[name], remaining=10)
        e = campaign.estimate(run, [], timings, 3, "NVIDIA H200", None, learned)
        assert e["source"].startswith("record (h100-cifar10-jpeg, 2 runs on NVIDIA H200")
        for other in done:
            assert abs(e["total_s"] - measured[other]) <= 0.25 * measured[other], (name, e, measured[other])
    # the learned parts: LCNN starts far slower than Standard (its operator norms), and evaluates slower
    lcnn = learned.estimate(runs["lcnn-lam1e-3-s2"].cfg, 3, "NVIDIA H200", lambda n, c: 1.0)
    std = learned.estimate(runs["standard-s1"].cfg, 3, "NVIDIA H200", lambda n, c: 1.0)
    assert lcnn["startup_s"] > 3 * std["startup_s"] and lcnn["eval_s"] > std["eval_s"] > 60
    # a variant the call did not run comes from the benchmark, slowed as the recorded variants were
    grad = learned.estimate(runs["gradreg-s1"].cfg, 3, "NVIDIA H200", lambda n, c: 1.0)
    assert grad["source"].startswith("benchmark (train_step_cuda_epoch.json") and grad["startup_s"] == std["startup_s"]
    bench = {b["variant"]: b for b in learned.benchmark}
    assert grad["epoch_s"] > bench["gradreg"]["epoch_s"] * 50000 / bench["gradreg"]["images"]


def test_plan_reads_the_record_before_history_and_an_explicit_timing_wins(tmp_path, capsys):
    res, _ = _h200_call(tmp_path)
    base = ["campaign", "--preset", "h100-cifar10-jpeg", "--budget", "560", "--concurrent", "3", "--gpus", "cpu",
            "--plan-only", "--hardware", "NVIDIA H200", "--results", str(res), "--out", str(tmp_path / "runs")]
    assert main(base) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if " lcnn-lam1e-3-s2 " in l)
    assert "record (h100-cifar10-jpeg" in line
    minutes = float(line.split()[5])
    assert 0.75 * 389 <= 60 * minutes <= 1.25 * 399
    assert main(base + ["--timing", "eval_s=1000"]) == 0  # stated on the command line: it wins
    line = next(l for l in capsys.readouterr().out.splitlines() if " lcnn-lam1e-3-s2 " in l)
    assert 60 * float(line.split()[5]) > 1000


SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_campaign.sh"


def test_next_gpu_call_runs_the_benchmark_then_a_campaign_in_the_time_left(tmp_path):
    """scripts/gpu_campaign.sh next on the CPU, in a folder laid out as the device call's: the bench step
    (a stand-in here: the real one needs a GPU) first, then a tiny campaign whose budget is what is left."""
    import hashlib
    import os
    import subprocess
    import sys
    work, out = tmp_path / "work", tmp_path / "OUT"
    (work / "data").mkdir(parents=True)
    (work / ".gpu" / "campaign").mkdir(parents=True)
    (work / "data" / "cifar10-jpeg.tar.gz").write_bytes(b"stand-in archive")
    md5 = hashlib.md5(b"stand-in archive").hexdigest()
    (work / ".gpu" / "campaign" / "cifar10-jpeg.tar.gz.md5").write_text(f"{md5}  cifar10-jpeg.tar.gz\n")
    (work / ".gpu" / "campaign" / "GIT_SHA").write_text("e" * 40 + "\n")
    preset = _tiny_preset(tmp_path / "tiny-next.yaml", "one run that fits, one that does not", [QUICK, NEVER])
    env = dict(os.environ, OUT=str(out), PRESET=str(preset), GPUS="cpu", BENCH='sleep 4; echo timed > "$OUT/bench-stub.txt"',
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", str(SCRIPT), "next", "50"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    phases = (out / "next.txt").read_text().splitlines()
    assert phases[0].startswith("bench rc 0") and (out / "bench-stub.txt").read_text() == "timed\n"
    budget = int(phases[1].split()[2])
    assert budget <= 50 - 4 - 10 and phases[2].startswith("campaign rc 0")
    (call,) = json.loads((work / "results" / "tiny-next" / "campaign.json").read_text())["calls"]
    assert call["budget_s"] == budget and call["concurrent"] == 3 and call["git_sha"] == "e" * 40
    assert [r["name"] for r in call["runs"]] == ["quick"] and call["runs"][0]["status"] == "finished"
    assert sorted(p.name for p in out.glob("campaign-*")) == ["campaign-tiny-next.tar.gz", "campaign-tiny-next.tar.gz.md5"]
    fresh = tmp_path / "fresh"
    assert main(["campaign", "--unpack", str(out / "campaign-tiny-next.tar.gz"), "--results", str(fresh),
                 "--out", str(tmp_path / "r2")]) == 0
    assert list(load_runs("tiny-next", root=fresh)["run"]) == ["quick"]


def test_next_gpu_call_preset_holds_the_issue_order():
    """The h100-cifar10-jpeg grid after its committed runs: LCNN seed 2 at both lambdas, seed 3 of
    Standard and LCNN at 1e-3; GradReg and
    LCNN + GradReg seeds 1-2 at 1e-3, then LCNN + GradReg at 1e-2; the ablation at full width with
    lambda_beta and lambda_gamma apart (10 epochs); 50-epoch runs last."""
    runs = campaign.campaign_runs(load_preset("h100-cifar10-jpeg"))
    assert [r.priority for r in runs] == sorted(r.priority for r in runs)
    todo = [r for r in runs if not campaign.published(REPO_RESULTS, "h100-cifar10-jpeg", r.name)]
    assert {r.priority for r in runs if r not in todo} <= {1, 2}  # what the folder holds comes first
    key = [(r.variant, r.cfg["lam_beta"], r.cfg["lam_gamma"], r.cfg["seed"], r.cfg["epochs"]) for r in todo]
    assert key[:2] == [("lcnn", 1e-3, 1e-3, 2, 10), ("lcnn", 1e-2, 1e-2, 2, 10)]
    # the fourth seed of the accuracy row's two models (book/accuracy_design.md)
    assert [(k[0], k[3]) for k in key[2:4]] == [("standard", 3), ("lcnn", 3)] and key[3][1:3] == (1e-3, 1e-3)
    key = key[:2] + key[4:]
    assert [k[0] for k in key[2:6]] == ["gradreg", "gradreg", "lcnn_gradreg", "lcnn_gradreg"]
    assert all(k[1] == 1e-3 for k in key[4:6]) and [k[1:3] for k in key[6:8]] == [(1e-2, 1e-2)] * 2
    ablation = key[8:14]
    assert {(k[1], k[2]) for k in ablation} == {(1e-2, 1e-3), (1e-3, 1e-2)} and {k[4] for k in ablation} == {10}
    assert {k[4] for k in key[14:]} == {50} and len(key) > 14


def test_probe_allows_a_process_per_two_cpu_cores():
    assert campaign.probe_limit(16) == 8 and campaign.probe_limit(2) == 1
    assert campaign.probe_limit(64) == campaign.MAX_SHARING and campaign.probe_limit(1) == 1


def test_gpu_campaign_preset_holds_the_issue_order():
    runs = campaign.campaign_runs(load_preset("gpu-campaign"))
    first = [(r.variant, r.cfg["lam_beta"], r.cfg["epochs"], r.cfg["seed"]) for r in runs[:4]]
    assert first == [("standard", 1e-3, 50, 0), ("lcnn", 1e-2, 50, 0), ("gradreg", 1e-3, 50, 0),
                     ("lcnn_gradreg", 1e-2, 50, 0)]
    assert [r.priority for r in runs] == sorted(r.priority for r in runs)
    assert {r.variant for r in runs if r.priority == 3} == {"cure", "softplus_wd", "adv"}
    assert {r.cfg["seed"] for r in runs if r.priority == 4} == {1, 2}
    assert [(r.variant, r.cfg["epochs"]) for r in runs if r.priority == 5] == [("standard", 200), ("lcnn", 200)]
    assert all(r.cfg["dataset"] == "cifar10-jpeg" and r.cfg["width"] == 64 and r.cfg["eval_samples"] >= 1000
               and r.cfg["eval_pgd_samples"] >= 1000 for r in runs)
    assert len({r.name for r in runs}) == len(runs)


def test_train_stop_at_leaves_a_resumable_run_with_the_same_final_weights(tmp_path):
    cfg = dict(TINY_CONFIG, variant="lcnn", epochs=2)
    full = train_mod.train(cfg, out=tmp_path / "a", progress=False)
    with pytest.raises(train_mod.DeadlineReached, match="before epoch 1/2"):
        train_mod.train(cfg, out=tmp_path / "b", progress=False, stop_at=time.time() - 1)
    assert not train_mod.is_finished(tmp_path / "b" / "custom" / "lcnn-s0")
    resumed = train_mod.train(cfg, out=tmp_path / "b", progress=False, resume=True)
    a = torch.load(full / "model.pt", weights_only=True)["model"]
    b = torch.load(resumed / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_probe_reports_images_per_second_per_level(tmp_path):
    preset = _preset(tmp_path)
    run = campaign.campaign_runs(load_preset(str(preset)))[0]
    probe = campaign.run_probe(str(preset), run, [("", "cpu")], 2, window=1.0, warmup=1, log=lambda *a: None)
    assert [lvl["concurrent"] for lvl in probe["levels"]] == [1, 2]
    assert all(lvl["images_per_s"] > 0 for lvl in probe["levels"]) and probe["best"] in (1, 2)


def test_simulated_kaggle_session_uses_the_working_folder_and_resumes_from_an_input(tmp_path, monkeypatch, capsys):
    working, inputs = tmp_path / "kaggle" / "working", tmp_path / "kaggle" / "input"
    monkeypatch.setattr(hosted, "KAGGLE_WORKING", str(working))
    monkeypatch.setattr(hosted, "KAGGLE_INPUT", str(inputs))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    host = hosted.detect()
    assert host.name == "kaggle" and host.runs == working / "lcnn" / "runs"
    # an earlier version's output, added as an input: one run with a checkpoint after 3 epochs
    prev = inputs / "lcnn-train-v3" / "lcnn" / "runs" / "author-cifar100" / "lcnn-s0"
    prev.mkdir(parents=True)
    (prev / "checkpoint.pt").write_bytes(b"ckpt")
    (prev / "history.csv").write_text("epoch,epoch_time\n1,1\n2,1\n3,1\n")
    assert main(["campaign", "--preset", "author-cifar100", "--budget", "43000", "--gpus", "cpu",
                 "--plan-only"]) == 0
    log = capsys.readouterr().out
    assert f"runs in {working / 'lcnn' / 'runs'}" in log and "host: kaggle" in log
    assert (working / "lcnn" / "runs" / "author-cifar100" / "lcnn-s0" / "checkpoint.pt").read_bytes() == b"ckpt"
    line = next(l for l in log.splitlines() if " lcnn-s0 " in l)
    assert line.split()[2:4] == ["200", "197"]  # 197 epochs left after the 3 of the earlier session
    assert "estimated GPU-hours" in log
    # a working copy that is further along is not overwritten by the input
    (working / "lcnn" / "runs" / "author-cifar100" / "lcnn-s0" / "history.csv").write_text(
        "epoch,epoch_time\n" + "".join(f"{i},1\n" for i in range(1, 6)))
    assert hosted.seed_from_inputs(host, "author-cifar100", log=lambda *a: None) == []


def test_colab_and_local_detection(tmp_path, monkeypatch):
    monkeypatch.setattr(hosted, "COLAB_ROOT", str(tmp_path / "content"))
    monkeypatch.setattr(hosted, "COLAB_DRIVE", str(tmp_path / "content" / "drive" / "MyDrive"))
    colab = hosted.detect({"COLAB_RELEASE_TAG": "release-colab_20260101"})
    assert colab.name == "colab" and not colab.persistent and "drive.mount" in colab.note
    (tmp_path / "content" / "drive" / "MyDrive").mkdir(parents=True)
    colab = hosted.detect({"COLAB_RELEASE_TAG": "x"})
    assert colab.persistent and colab.work == tmp_path / "content" / "drive" / "MyDrive" / "lcnn"
    assert hosted.detect({"KAGGLE_URL_BASE": "https://www.kaggle.com"}).name == "kaggle"
    local = hosted.detect({})
    assert local.name == "local" and str(local.runs) == "runs"


@pytest.mark.parametrize("args, message", [
    (["campaign", "--preset", "smoke"], "--budget"),
    (["campaign", "--preset", "smoke", "--budget", "10", "--concurrent", "two"], "--concurrent"),
    (["campaign", "--unpack", "missing.tar.gz"], "not found"),
    (["campaign", "--preset", "smoke", "--budget", "10", "--plan-only", "--timing", "eval=3"], "--timing"),
    (["campaign", "--preset", "smoke", "--budget", "10", "--hardware", "Tesla T4"], "--plan-only"),
    (["campaign", "--preset", "smoke", "--budget", "10", "--plan-only", "--max-concurrent", "many"], "--max-concurrent"),
    (["train", "--preset", "gpu-campaign", "--run-name", "nope"], "no run named nope"),
])
def test_bad_campaign_input_gives_one_line_error(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_train_notebook_plans_a_campaign_in_a_simulated_kaggle_session(tmp_path, monkeypatch):
    import papermill as pm
    from pathlib import Path
    working, inputs = tmp_path / "kaggle" / "working", tmp_path / "kaggle" / "input"
    prev = inputs / "lcnn-train-v1" / "lcnn" / "runs" / "smoke" / "lcnn-s0"
    prev.mkdir(parents=True)
    (prev / "checkpoint.pt").write_bytes(b"ckpt")
    (prev / "history.csv").write_text("epoch,epoch_time\n1,1\n")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("LCNN_KAGGLE_WORKING", str(working))
    monkeypatch.setenv("LCNN_KAGGLE_INPUT", str(inputs))
    out = tmp_path / "train.ipynb"
    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    pm.execute_notebook(str(notebooks / "train.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path), parameters=dict(mode="campaign", preset="smoke", install=False,
                                                           gpus="cpu", plan_only=True, budget_hours=0.01))
    text = out.read_text()
    assert "platform: kaggle" in text and "estimated GPU-hours" in text and "Traceback" not in text
    assert (working / "lcnn" / "runs" / "smoke" / "lcnn-s0" / "checkpoint.pt").read_bytes() == b"ckpt"


def test_torchrun_reads_the_campaign_train_command_as_its_script_and_arguments():
    """torchrun's own parser must leave every train option to the script (it once took --run for
    an abbreviation of its --run-path)."""
    from torch.distributed.run import get_args_parser
    run = campaign.campaign_runs(load_preset("gpu-campaign"))[1]
    cmd = campaign.train_command("gpu-campaign", run, "runs", "results", 123.0, ["epochs=1"], "cuda",
                                 torchrun_procs=2)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    args = get_args_parser().parse_args(cmd[3:])
    assert args.module and args.training_script == "lcnn_core" and args.nproc_per_node == "2"
    assert args.training_script_args == ["train", "--preset", "gpu-campaign", "--out", "runs", "--results", "results",
                                         "--resume", "--stop-at", "123.0", "--run-name", "lcnn-lam1e-2-s0",
                                         "--set", "epochs=1"]


def test_the_probe_worker_trains_the_step_train_runs_and_counts_whole_batches():
    """The probe's worker (campaign.run_probe starts one per process) on CPU: it warms up, says
    ready, and reports the images of the training steps (lcnn_core.step.TrainStep) that ended
    inside its window, a whole number of batches."""
    import json
    import subprocess
    import sys
    import time
    from lcnn_core.config import load_preset, resolve
    spec = dict(preset="smoke", overrides=dict(variant="lcnn"), device="cpu", warmup=1)
    p = subprocess.Popen([sys.executable, "-m", "lcnn_core.campaign", "probe-worker", json.dumps(spec)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        start = time.time() + 0.5
        p.stdin.write(json.dumps([[start, start + 1.5]]) + "\n")
        p.stdin.flush()
        (count,) = json.loads(p.stdout.readline())
    finally:
        p.kill()
    batch = resolve({}, base=load_preset("smoke")["config"])["batch_size"]
    assert count > 0 and count % batch == 0
