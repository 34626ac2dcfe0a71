"""Provenance of a result: code version, packages, hardware, time, and a code fingerprint.

The fingerprint (``code_fingerprint``) is a SHA-256 over the ``lcnn_core`` modules that a run
imports, each reduced to its abstract syntax tree with docstrings removed, so it changes with
what the code does and not with docstrings, comments or formatting. "The modules a run
imports" are ``train`` and ``evaluate`` and every ``lcnn_core`` module reachable from them
by import statements (including imports inside functions), read from the source files, not
from ``sys.modules``, so the answer does not depend on what else a process has loaded.
Not covered: the presets (each run saves its resolved config.yaml), dependencies (their
versions are recorded beside), and the Python version's AST format (recorded too).
``report`` lists every results folder with its fingerprint and whether it matches the code.
"""
import ast
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent
FINGERPRINT_ROOTS = ("train", "evaluate")


def _git(*args):
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device=None):
    """A one-line description of the device a result was computed on."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def provenance(device=None, **extra):
    """Dict with git sha and dirty flag, versions, hardware, UTC time, plus ``extra``."""
    import numpy
    from . import __version__
    # LCNN_GIT_SHA: for copies of the tree without .git (e.g. a lent GPU machine); when set, it wins
    sha = os.environ.get("LCNN_GIT_SHA") or _git("rev-parse", "HEAD")
    # results/ is excluded: a script that rewrites its own outputs must not mark its code dirty
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return dict(
        git_sha=sha, git_dirty=bool(dirty) if dirty is not None else None,
        code_fingerprint=code_fingerprint(), fingerprint_modules=list(fingerprint_modules()),
        lcnn_core=__version__, python=sys.version.split()[0], torch=torch.__version__,
        numpy=numpy.__version__, platform=platform.platform(), hardware=hardware(device),
        time_utc=now(), **extra,
    )


def now():
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def process_age_s():
    """Seconds since this process started (Linux: /proc/self/stat's start time against
    /proc/uptime), so start-up (interpreter, imports, CUDA, data) is counted whole; None elsewhere."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- code fingerprint
def _tree(name, package_dir):
    return ast.parse((Path(package_dir) / f"{name}.py").read_text(), filename=f"{name}.py")


def _local_imports(tree, package_dir):
    """Names of the package's modules imported anywhere in ``tree`` (relative or lcnn_core.X)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == "lcnn_core"):
                mod = (node.module or "").removeprefix("lcnn_core").lstrip(".")
                if mod:
                    names.add(mod.split(".")[0])
                else:  # from . import a, b
                    names.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lcnn_core."))
    return {n for n in names if (Path(package_dir) / f"{n}.py").exists()}


def fingerprint_modules(roots=FINGERPRINT_ROOTS, package_dir=PACKAGE_DIR):
    """Sorted names of the package modules reachable by imports from ``roots``."""
    return _fingerprint_modules(tuple(roots), str(package_dir))


@lru_cache(maxsize=None)
def _fingerprint_modules(roots, package_dir):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_local_imports(_tree(name, package_dir), package_dir) - seen)
    return tuple(sorted(seen))


def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_fingerprint(roots=FINGERPRINT_ROOTS, package_dir=PACKAGE_DIR):
    """16 hex digits of SHA-256 over (module name, AST without docstrings) of every module in
    ``fingerprint_modules``: equal for code that differs only in docstrings, comments, blank
    lines or layout; different for any change of what the code does."""
    h = hashlib.sha256()
    for name in fingerprint_modules(roots, package_dir):
        tree = _strip_docstrings(_tree(name, package_dir))
        h.update(name.encode() + b"\0" + ast.dump(tree, include_attributes=False).encode() + b"\0")
    return h.hexdigest()[:16]


def report(results_root="results", current=None):
    """One row per results folder holding a provenance.json (a run): folder, the fingerprint
    the run was trained with and the one it was evaluated with (geometry.json; None where not
    recorded, e.g. made before fingerprints existed), whether both match the current code,
    git sha and dirty flag. A pandas DataFrame, sorted by folder."""
    import pandas as pd
    current = current or code_fingerprint()
    rows = []
    for prov_path in sorted(Path(results_root).rglob("provenance.json")):
        run = prov_path.parent
        prov = json.loads(prov_path.read_text())
        geo = run / "geometry.json"
        evaluated = json.loads(geo.read_text()).get("provenance", {}) if geo.exists() else {}
        trained_fp, eval_fp = prov.get("code_fingerprint"), evaluated.get("code_fingerprint")
        rows.append(dict(folder=str(run.relative_to(results_root)), trained_with=trained_fp,
                         evaluated_with=eval_fp if geo.exists() else None,
                         current=trained_fp == current and (eval_fp == current or not geo.exists()),
                         git_sha=(prov.get("git_sha") or "")[:10] or None, git_dirty=prov.get("git_dirty")))
    return pd.DataFrame(rows, columns=["folder", "trained_with", "evaluated_with", "current", "git_sha",
                                       "git_dirty"])
