"""Run configuration: defaults, YAML presets, validation (STUDY.md §3).

A run is one (preset, training variant, seed). Every key of ``DEFAULTS`` can be
set by a preset's ``config:`` block or by ``--set key=value``; unknown keys and
wrong types are refused with a one-line message naming the closest key.
"""
import copy
import difflib
from importlib import resources
from pathlib import Path

import yaml

# The seven rows of the paper's table: model variant (lcnn_core.models) and regularisers.
TRAINING_VARIANTS = {
    "standard":     dict(model="standard", lcnn_penalty=False, gradreg=False, cure=False, adversarial=False),
    "lcnn":         dict(model="lcnn",     lcnn_penalty=True,  gradreg=False, cure=False, adversarial=False),
    "gradreg":      dict(model="standard", lcnn_penalty=False, gradreg=True,  cure=False, adversarial=False),
    "lcnn_gradreg": dict(model="lcnn",     lcnn_penalty=True,  gradreg=True,  cure=False, adversarial=False),
    "cure":         dict(model="standard", lcnn_penalty=False, gradreg=False, cure=True,  adversarial=False),
    "softplus_wd":  dict(model="softplus", lcnn_penalty=False, gradreg=False, cure=False, adversarial=False),
    "adv":          dict(model="standard", lcnn_penalty=False, gradreg=False, cure=False, adversarial=True),
    # What lowers curvature (issue 18): the LCNN architecture without its penalty (= lambda 0:
    # adding 0 * penalty changes no float), and each LCNN component alone, trained with the
    # LCNN penalty on whichever of beta / gamma that component has (none for sn_conv).
    "lcnn_nopen":   dict(model="lcnn",              lcnn_penalty=False, gradreg=False, cure=False, adversarial=False),
    "csoftplus":    dict(model="centered_softplus", lcnn_penalty=True,  gradreg=False, cure=False, adversarial=False),
    "snconv":       dict(model="sn_conv",           lcnn_penalty=True,  gradreg=False, cure=False, adversarial=False),
    "clipbn":       dict(model="clipped_bn",        lcnn_penalty=True,  gradreg=False, cure=False, adversarial=False),
}
VARIANT_LABELS = {
    "standard": "Standard", "lcnn": "LCNN", "gradreg": "GradReg", "lcnn_gradreg": "LCNN + GradReg",
    "cure": "CURE", "softplus_wd": "Softplus + Wt. Decay", "adv": "Adversarial training",
    "lcnn_nopen": "LCNN, λ = 0", "csoftplus": "Centered softplus only", "snconv": "SN conv only",
    "clipbn": "Clipped BN only",
}

DEFAULTS = {
    # data
    "dataset": "mnist5k",        # mnist5k | cifar10 | cifar100 | cifar10-jpeg
    "data_root": "data",
    "n_train": None,             # stratified seeded subset; None = all
    "n_test": None,
    "num_classes": None,         # None = the dataset's; a mismatch is refused
    "subset_seed": 0,            # the same subset for every variant and seed
    "augment": True,             # random crop (pad 4) + flip, batch-wise on the device
    "flip": True,                # off for digits
    # model
    "arch": "resnet18",          # resnet18 | small_cnn
    "width": 64,                 # 64 = the paper's ResNet-18
    "variant": "standard",       # one of TRAINING_VARIANTS
    # optimiser (paper: SGD 0.1, momentum 0.9, wd 5e-4, batch 128, 200 epochs)
    "epochs": 200,
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,        # never applied to log beta / log gamma
    "milestones": [0.75, 0.875], # fractions of the run where lr *= lr_decay (150, 175 of 200; train.milestone_steps)
    "lr_decay": 0.1,
    "lr_schedule": "multistep",  # multistep (the paper's) | onecycle (torch OneCycleLR, peak lr at onecycle_warmup)
    "onecycle_warmup": 0.3,      # fraction of the steps spent rising to the peak lr (torch's default)
    # regularisers
    "lam_beta": 1e-3,            # paper's tables: 1e-3; refactored code (the team's runs): 1e-2
    "lam_gamma": 1e-3,
    "gradreg": 0.0061,           # weight on mean_i ||grad_x l_i||^2; = 1e5 * 1e-3 / 128^2 (reference convention)
    "cure": 0.0061,              # weight on CURE's mean_i ||g(x + h z) - g(x)||^2 (same convention assumed)
    "cure_h": 1.0,
    "adv_eps": 0.1,              # L2 PGD adversarial training: eps, step, steps
    "adv_step": 0.01,
    "adv_steps": 3,
    # run
    "seed": 0,
    "device": "auto",            # auto | cpu | cuda
    "amp": "auto",               # auto (CUDA: bf16 from compute capability 8.0, fp16 + GradScaler on 7.x, else off; CPU: off) | off | bf16 | fp16
    "channels_last": "auto",     # auto (on for CUDA) | on | off
    "capture": "auto",           # replay each training step as a CUDA graph: auto (CUDA, one process, not adversarial training) | off
    "compile": "auto",           # torch.compile the model: auto (CUDA, first-order variants, when the step is not captured) | on | off
    # evaluation (python -m lcnn_core evaluate)
    "eval_samples": 256,         # test images for the geometry table and gradient robustness
    "eval_pgd_samples": 500,     # test images for PGD accuracy
    "eval_pgd_eps": [0.05, 0.1, 0.15, 0.2],
    "eval_pgd_steps": 20,
    "eval_batch_size": 64,
    # the strong attack (lcnn_core.apgd): APGD-CE + APGD-T beside our PGD on a fixed subset
    "eval_apgd_samples": None,   # test images (stratified, seed 0); None = not run
    "eval_apgd_eps": [],         # L2 radii; [] = eval_pgd_eps
    "eval_apgd_steps": 100,      # AutoAttack's standard: 100 steps, 1 restart, 9 target classes
    "eval_apgd_restarts": 1,
    "eval_apgd_targets": 9,
    "eval_pgd_restarts": 1,      # random starts of our PGD in that table
    "eval_attack_check": False,  # rerun at the middle eps with 2x steps and restarts (apgd.more_effort_check)
}


DATASET_CLASSES = {"mnist5k": 10, "cifar10": 10, "cifar10-jpeg": 10, "cifar100": 100}


class ConfigError(ValueError):
    """Bad preset, key or value: the CLI prints the message and exits non-zero."""


def preset_names():
    return sorted(p.name[:-5] for p in resources.files("lcnn_core.presets").iterdir() if p.name.endswith(".yaml"))


def _read_preset(name):
    """A packaged preset by name, or a .yaml file by path (a campaign of one's own; the tests' tiny ones)."""
    if str(name).endswith((".yaml", ".yml")) and Path(name).is_file():
        try:
            preset = yaml.safe_load(Path(name).read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"preset {name}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(preset, dict):
            raise ConfigError(f"preset {name}: expected a mapping of sections")
        return preset
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names)}")
    return yaml.safe_load(resources.files("lcnn_core.presets").joinpath(f"{name}.yaml").read_text())


def preset_name(name):
    """The name results/ and runs/ use for a preset given by name or by path (the file's stem)."""
    return Path(name).stem if str(name).endswith((".yaml", ".yml")) else name


def load_preset(name):
    """A training preset: description, variants, seeds, config (validated overrides) and an optional
    grid (see ``preset_runs``). A study preset (``study:``) is refused here; see ``load_study``."""
    preset = _read_preset(name)
    if "study" in preset:
        raise ConfigError(f"{name} is the preset of a study, not of training runs: "
                          f"python -m lcnn_core {preset['study']} --preset {name}")
    unknown = set(preset) - {"description", "variants", "seeds", "config", "grid", "timings"}
    if unknown:
        raise ConfigError(f"preset {name}: unknown section(s) {sorted(unknown)}")
    preset["name"] = preset_name(name)
    preset["config"] = resolve(preset.get("config") or {})
    for v in preset.get("variants", []):
        check_variant(v)
    preset_runs(preset)  # a bad grid fails here, before any training
    return preset


def preset_runs(preset, variants=None, seeds=None):
    """Every run of a training preset as (name, overrides of its config), in training order;
    ``variants`` / ``seeds`` (the CLI's --variant / --seed) replace the preset's lists.

    Without ``grid:`` the runs are variants x seeds, named VARIANT-sSEED. A grid is a list of
    blocks; each block takes the preset's variants x seeds (or its own ``variants:`` / ``seeds:``)
    x the product of its ``axes`` (in the order written, the first varying slowest), and names each run
    with ``name:``, a format string over ``variant``, ``seed`` and the axis names::

        grid:
          - name: "{variant}-lam{lam}-e{epochs}-s{seed}"
            axes:
              epochs: {keys: [epochs], values: [5, 20]}
              lam: {keys: [lam_beta, lam_gamma], values: [0, 1e-3, 1e-2, 1e-1]}

    An axis value sets every key in ``keys``; it enters the name as written in the YAML, so
    ``1e-3`` (a string to YAML 1.1, a float once validated) names ``lam1e-3``.
    """
    chosen, chosen_seeds = variants, seeds
    variants = variants or preset.get("variants") or [preset["config"]["variant"]]
    seeds = seeds or preset.get("seeds") or [0]
    grid = preset.get("grid") or [{}]
    runs = []
    for block in grid:
        unknown = set(block) - {"name", "variants", "seeds", "axes", "priority"}  # priority: lcnn_core.campaign
        if unknown:
            raise ConfigError(f"preset {preset['name']}: unknown grid key(s) {sorted(unknown)}")
        axes = block.get("axes") or {}
        for axis, spec in axes.items():
            if set(spec) != {"keys", "values"} or not spec["keys"] or not spec["values"]:
                raise ConfigError(f"preset {preset['name']}: grid axis {axis!r} needs non-empty keys and values")
        points = [{}]
        for axis, spec in axes.items():
            points = [dict(p, **{axis: v}) for p in points for v in spec["values"]]
        block_variants = block.get("variants") or variants
        if chosen and block.get("variants"):
            block_variants = [v for v in block_variants if v in chosen]
        for v in block_variants:
            check_variant(v)
            for seed in seeds if chosen_seeds else block.get("seeds") or seeds:
                for point in points:
                    overrides = dict(variant=v, seed=seed)
                    for axis, value in point.items():
                        overrides.update({k: value for k in axes[axis]["keys"]})
                    template = block.get("name")
                    try:
                        name = template.format(variant=v, seed=seed, **point) if template else None
                    except KeyError as e:
                        raise ConfigError(f"preset {preset['name']}: grid name {template!r} uses unknown {e}")
                    run = (name or run_name(dict(variant=v, seed=seed)), overrides)
                    if run in runs:  # the same run reached through two blocks (--variant picks both)
                        continue
                    if run[0] in {n for n, _ in runs}:
                        raise ConfigError(f"preset {preset['name']}: the grid names two different runs {run[0]}")
                    runs.append(run)
    for _, overrides in runs:
        resolve(overrides, base=preset["config"])
    return runs


def load_study(name, overrides=None):
    """A study preset: ``study:`` (the CLI verb that runs it), description and ``settings``, the
    full description of the study. ``extends: OTHER`` starts from OTHER's settings (a smaller
    version of the same study); ``overrides`` (``--set``) come last. Keys that the base study
    does not have are refused, so a typo cannot pass silently."""
    preset = _read_preset(name)
    if "study" not in preset:
        raise ConfigError(f"{name} is a training preset: python -m lcnn_core train --preset {name}")
    unknown = set(preset) - {"description", "study", "settings", "extends"}
    if unknown:
        raise ConfigError(f"preset {name}: unknown section(s) {sorted(unknown)}")
    settings = dict(preset.get("settings") or {})
    if "extends" in preset:
        base = load_study(preset["extends"])
        if base["study"] != preset["study"]:
            raise ConfigError(f"preset {name} extends {preset['extends']}, a {base['study']} study")
        settings = _update_known(base["settings"], settings, name)
    settings = _update_known(settings, overrides or {}, name)
    settings = {k: _expand(v) for k, v in settings.items()}
    return dict(preset, name=name, settings=settings)


def _update_known(base, new, name):
    unknown = set(new) - set(base)
    if unknown:
        close = difflib.get_close_matches(sorted(unknown)[0], base, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"preset {name}: unknown setting(s) {sorted(unknown)}{hint}")
    return dict(base, **new)


def _expand(value):
    """``{linspace: [start, stop, num]}`` -> numpy.linspace(...).tolist() (exact grids that YAML
    cannot write plainly: -0.3999999999999999 ...); anything else unchanged."""
    if isinstance(value, dict) and set(value) == {"linspace"}:
        import numpy as np
        start, stop, num = value["linspace"]
        return np.linspace(float(start), float(stop), int(num)).tolist()
    return value


def check_variant(v):
    if v not in TRAINING_VARIANTS:
        raise ConfigError(f"unknown training variant {v!r}; allowed: {', '.join(TRAINING_VARIANTS)}")


def _coerce(key, value):
    default = DEFAULTS[key]
    if isinstance(value, str) and not isinstance(default, str):
        try:  # YAML reads 1e-3 as a string
            value = float(value)
        except ValueError:
            pass
    if default is None:  # optional positive int
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{key} must be a positive integer or null, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [float(v) for v in value]
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def resolve(overrides, base=None):
    """DEFAULTS (or ``base``) updated with ``overrides``, every key and type checked."""
    cfg = copy.deepcopy(base if base is not None else DEFAULTS)
    for key, value in overrides.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        cfg[key] = _coerce(key, value)
    check_variant(cfg["variant"])
    for key in ("epochs", "batch_size", "width"):
        if cfg[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {cfg[key]}")
    if cfg["dataset"] not in DATASET_CLASSES:
        raise ConfigError(f"unknown dataset {cfg['dataset']!r}; allowed: {', '.join(DATASET_CLASSES)}")
    n = DATASET_CLASSES[cfg["dataset"]]
    if cfg["num_classes"] not in (None, n):
        raise ConfigError(f"{cfg['dataset']} has {n} classes, but num_classes={cfg['num_classes']} was requested")
    if not 0 < cfg["onecycle_warmup"] < 1:
        raise ConfigError(f"onecycle_warmup must lie in (0, 1), got {cfg['onecycle_warmup']}")
    for key in ("amp", "channels_last", "capture", "device", "compile", "lr_schedule"):
        allowed = {"amp": ("auto", "off", "bf16", "fp16"), "channels_last": ("auto", "on", "off"),
                   "capture": ("auto", "off"),
                   "device": ("auto", "cpu", "cuda"), "compile": ("auto", "on", "off"),
                   "lr_schedule": ("multistep", "onecycle")}[key]
        if cfg[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {cfg[key]!r}")
    return cfg


def parse_set(items):
    """['key=value', ...] -> dict, values parsed as YAML (so 0.1, true, [1, 2] work)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_name(cfg):
    return f"{cfg['variant']}-s{cfg['seed']}"
