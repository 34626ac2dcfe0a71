"""Where the code runs (Kaggle, Colab or a plain machine) and the folders a long job uses there.

    host = detect()                      # Host(name='kaggle', runs=/kaggle/working/lcnn/runs, ...)
    seed_from_inputs(host, "author-cifar100")   # Kaggle: continue from an earlier version's output

Kaggle is recognised by ``KAGGLE_KERNEL_RUN_TYPE`` or ``KAGGLE_URL_BASE``, Colab by
``COLAB_RELEASE_TAG`` or an importable ``google.colab``. On Kaggle, runs and results go under
``/kaggle/working/lcnn``: the notebook's output, kept with each saved version ("Save & Run All"),
and carried over between interactive sessions when the notebook's persistence setting keeps files.
A new session of a saved version starts with an empty working folder, so to resume add the last
version's output as an input ("Add Input" -> your notebook); ``seed_from_inputs`` finds the run
folders under ``/kaggle/input/*/`` and copies each into the working folder unless the working copy
has as many epochs already. On Colab the folders go on Google Drive when it is mounted at
``/content/drive`` (the virtual machine's disk is wiped with the session), else under ``/content``.
"""
import dataclasses
import importlib.util
import os
import shutil
from pathlib import Path


# Where the services put things. LCNN_KAGGLE_WORKING / LCNN_KAGGLE_INPUT move Kaggle's folders, which is how
# the tests simulate a Kaggle session (in this process or in a notebook kernel) in a temporary folder.
KAGGLE_WORKING = os.environ.get("LCNN_KAGGLE_WORKING", "/kaggle/working")
KAGGLE_INPUT = os.environ.get("LCNN_KAGGLE_INPUT", "/kaggle/input")
COLAB_ROOT = "/content"
COLAB_DRIVE = "/content/drive/MyDrive"


@dataclasses.dataclass
class Host:
    name: str            # kaggle | colab | local
    work: Path           # the folder that outlives the session (when persistent)
    persistent: bool
    note: str = ""

    @property
    def runs(self):
        return self.work / "runs" if self.name != "local" else Path("runs")

    @property
    def results(self):
        return self.work / "results" if self.name != "local" else Path("results")


def _colab_importable():
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def detect(environ=None):
    """The Host for ``environ`` (default: os.environ)."""
    env = os.environ if environ is None else environ
    kaggle_working, colab_drive, colab_root = KAGGLE_WORKING, COLAB_DRIVE, COLAB_ROOT
    if "KAGGLE_KERNEL_RUN_TYPE" in env or "KAGGLE_URL_BASE" in env:
        return Host("kaggle", Path(kaggle_working) / "lcnn", True,
                    "kept as the notebook's output; to resume in a new session add the last version's "
                    "output as an input")
    if "COLAB_RELEASE_TAG" in env or (environ is None and _colab_importable()):
        if Path(colab_drive).is_dir():
            return Host("colab", Path(colab_drive) / "lcnn", True, "on Google Drive")
        return Host("colab", Path(colab_root) / "lcnn", False,
                    "Google Drive is not mounted: this folder is wiped with the session "
                    "(from google.colab import drive; drive.mount('/content/drive'))")
    return Host("local", Path.cwd(), True)


def _epochs(run_dir):
    """How far a run folder got: finished (provenance.json) beats any epoch count; else the rows of
    its history.csv (one per finished epoch, under a header)."""
    if (run_dir / "provenance.json").is_file():
        return 10**9
    hist = run_dir / "history.csv"
    return max(0, len(hist.read_text().splitlines()) - 1) if hist.is_file() else 0


def seed_from_inputs(host, preset_name, inputs=None, log=print):
    """Kaggle: copy run folders (runs/<preset>/<run>/ with a checkpoint or a finished model) and
    published results (results/<preset>/<run>/) found under ``inputs/*/`` (an earlier version's
    output, at any depth up to lcnn/) into the working folder, unless the working copy is as far.
    Returns the names of the runs copied."""
    inputs = KAGGLE_INPUT if inputs is None else inputs
    if host.name != "kaggle" or not Path(inputs).is_dir():
        return []
    copied = []
    for base in sorted(Path(inputs).glob("*")):
        for lcnn in (base, base / "lcnn"):
            for kind, dest_root in (("runs", host.runs), ("results", host.results)):
                src_root = lcnn / kind / preset_name
                for src in sorted(src_root.glob("*")) if src_root.is_dir() else []:
                    if not src.is_dir() or src.name == "logs":
                        continue
                    if kind == "runs" and not ((src / "checkpoint.pt").is_file() or (src / "model.pt").is_file()):
                        continue
                    dest = dest_root / preset_name / src.name
                    if dest.is_dir() and _epochs(dest) >= _epochs(src):
                        continue
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(src, dest)
                    copied.append(f"{kind}/{preset_name}/{src.name}")
                    log(f"resumed from the input: {src} -> {dest}")
    return copied


def gpu_spec():
    """The --gpus value for this machine: '0,1,...' for each visible CUDA device, else 'cpu'."""
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ",".join(str(i) for i in range(n)) if n else "cpu"
