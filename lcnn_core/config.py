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
}
VARIANT_LABELS = {
    "standard": "Standard", "lcnn": "LCNN", "gradreg": "GradReg", "lcnn_gradreg": "LCNN + GradReg",
    "cure": "CURE", "softplus_wd": "Softplus + Wt. Decay", "adv": "Adversarial training",
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
    "milestones": [0.75, 0.875], # fractions of the epochs where lr *= lr_decay (150, 175 of 200)
    "lr_decay": 0.1,
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
    "amp": "auto",               # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    "channels_last": "auto",     # auto (on for CUDA) | on | off
    # evaluation (python -m lcnn_core evaluate)
    "eval_samples": 256,         # test images for the geometry table and gradient robustness
    "eval_pgd_samples": 500,     # test images for PGD accuracy
    "eval_pgd_eps": [0.05, 0.1, 0.15, 0.2],
    "eval_pgd_steps": 20,
    "eval_batch_size": 64,
}


DATASET_CLASSES = {"mnist5k": 10, "cifar10": 10, "cifar10-jpeg": 10, "cifar100": 100}


class ConfigError(ValueError):
    """Bad preset, key or value: the CLI prints the message and exits non-zero."""


def preset_names():
    return sorted(p.name[:-5] for p in resources.files("lcnn_core.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name):
    """The preset dict: description, variants, seeds, config (validated overrides), and for a
    campaign preset (lcnn_core.campaign) its ``runs`` list and ``timings``.

    ``name`` is a packaged preset's name or the path of a .yaml file (its stem names the preset).
    """
    path = Path(name)
    if name.endswith((".yaml", ".yml")) and path.is_file():
        text, name = path.read_text(), path.stem
    else:
        names = preset_names()
        if name not in names:
            raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names)}")
        text = resources.files("lcnn_core.presets").joinpath(f"{name}.yaml").read_text()
    try:
        preset = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {name}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(preset, dict):
        raise ConfigError(f"preset {name}: expected a mapping of sections")
    unknown = set(preset) - {"description", "variants", "seeds", "config", "runs", "timings"}
    if unknown:
        raise ConfigError(f"preset {name}: unknown section(s) {sorted(unknown)}")
    preset["name"] = name
    preset.setdefault("description", "")
    preset["config"] = resolve(preset.get("config") or {})
    if "runs" in preset:
        preset["runs"] = _check_runs(name, preset["runs"], preset["config"])
        preset.setdefault("variants", list(dict.fromkeys(r["variant"] for r in preset["runs"])))
        preset.setdefault("seeds", sorted({r["seed"] for r in preset["runs"]}))
    for v in preset.get("variants", []):
        check_variant(v)
    return preset


def _check_runs(preset_name, runs, base):
    """A campaign's run list: each {name, variant, seed, priority?, set?}, names unique, every
    run's configuration valid. Returns the list with ``set`` defaulted to {}."""
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"preset {preset_name}: runs must be a non-empty list")
    seen = set()
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or not {"name", "variant", "seed"} <= set(run):
            raise ConfigError(f"preset {preset_name}: run {i + 1} needs name, variant and seed")
        extra = set(run) - {"name", "variant", "seed", "priority", "set"}
        if extra:
            raise ConfigError(f"preset {preset_name}: run {run['name']!r} has unknown field(s) {sorted(extra)}")
        name = str(run["name"])
        if name in seen or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"preset {preset_name}: run name {name!r} is repeated or not a folder name")
        seen.add(name)
        run["set"] = dict(run.get("set") or {})
        if {"variant", "seed"} & set(run["set"]):
            raise ConfigError(f"preset {preset_name}: run {name!r} sets variant/seed inside set:")
        resolve(dict(run["set"], variant=run["variant"], seed=run["seed"]), base=base)
    return runs


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
    for key in ("amp", "channels_last", "device"):
        allowed = {"amp": ("auto", "off", "bf16", "fp16"), "channels_last": ("auto", "on", "off"),
                   "device": ("auto", "cpu", "cuda")}[key]
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
