"""Provenance of a result: code version, packages, hardware, time."""
import datetime as dt
import os
import platform
import subprocess
import sys

import torch


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
        lcnn_core=__version__, python=sys.version.split()[0], torch=torch.__version__,
        numpy=numpy.__version__, platform=platform.platform(), hardware=hardware(device),
        time_utc=now(), **extra,
    )


def now():
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
