"""Atomic file writes: a file is either its old self or completely new, never half-written
(a killed run, a full disk or a failed check leaves no partial file behind).

Each helper writes to a temporary file in the target's folder (same file system, so the
final ``os.replace`` is atomic) and renames it only when the write succeeded; on any error
the temporary file is removed and the target is left untouched.
"""
import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` for the caller to write; on leaving the block
    without an error it replaces ``path``, otherwise it is deleted. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(text, path):
    """Write the string ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(obj, path, indent=2, default=float):
    """``json.dumps(obj, indent=indent, default=default)`` to ``path`` atomically (default=float:
    numpy and torch scalars are written as numbers)."""
    write_text(json.dumps(obj, indent=indent, default=default), path)


def save_torch(obj, path):
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, model weights)."""
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
