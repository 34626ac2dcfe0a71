"""Tests for lcnn_core.data: CIFAR pickle archives (tiny ones in the official format,
served from file:// URLs), image folders, MNIST-5k, stratified subsets, batch augmentation."""

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from lcnn_core import data
from lcnn_core.data import DataError, Loader, download, load_dataset, stratified_indices


#############################################
#                 Helpers                   #
#############################################

def add_pickle(tf, name, obj):
    blob = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tf.addfile(info, io.BytesIO(blob))


def make_cifar_archive(path, kind="cifar10", n=3, seed=0):
    """A tiny archive in the official layout: same member names and pickle keys, n images
    per member, pixels channel-major as in the real release. Returns (path, md5, x, y)
    with x: uint8 (N, 3072) rows and y: labels, train then test, in member order."""
    rng = np.random.default_rng(seed)
    spec = data.CIFAR[kind]
    rows, labels = {}, {}
    with tarfile.open(path, "w:gz") as tf:
        for member in spec["train"] + spec["test"]:
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, spec["num_classes"], n)]
            rows[member], labels[member] = x, y
            obj = {b"data": x, spec["label_key"]: y, b"filenames": [b"a.png"] * n}
            if kind == "cifar100":
                obj[b"coarse_labels"] = [v // 5 for v in y]
            add_pickle(tf, member, obj)
        meta, key = spec["meta"]
        add_pickle(tf, meta, {key: [f"class{k}".encode() for k in range(spec["num_classes"])]})
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return path, md5, rows, labels


def write_image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_image_folder(folder, classes, h=4, w=5, per_class=2, seed=0):
    """PNG images folder/{train,test}/<class>/i.png; returns {(split, class, i): HxWx3 array}."""
    rng = np.random.default_rng(seed)
    images = {}
    for split in ("train", "test"):
        for c in classes:
            for i in range(per_class):
                a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                write_image(folder / split / c / f"{i}.png", a)
                images[split, c, i] = a
    return images


#############################################
#            CIFAR pickle archives          #
#############################################

def test_cifar10_from_file_url_has_channel_major_pixels_and_labels(tmp_path):
    archive, md5, rows, labels = make_cifar_archive(tmp_path / "src.tar.gz")
    spec = data.CIFAR["cifar10"]
    root = tmp_path / "data"

    d = load_dataset("cifar10", root=root, url=archive.as_uri(), md5=md5)

    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert d.num_classes == 10 and d.classes == tuple(f"class{k}" for k in range(10))
    assert d.y_train.tolist() == sum((labels[m] for m in spec["train"]), [])
    assert d.y_test.tolist() == labels[spec["test"][0]]
    # oracle: the CIFAR page's layout, 1024 red then green then blue, each 32x32 row-major
    row = rows[spec["train"][1]][2]  # image 2 of data_batch_2 -> index 3 + 2
    for c, h, w in [(0, 0, 1), (1, 0, 0), (2, 5, 7), (2, 31, 30)]:
        assert d.x_train[5, c, h, w] == row[c * 1024 + h * 32 + w]
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert (root / "cifar10.npz").is_file()


def test_cifar_second_load_reads_cache_without_archive(tmp_path):
    archive, md5, _, _ = make_cifar_archive(tmp_path / "src.tar.gz")
    root = tmp_path / "data"
    d1 = load_dataset("cifar10", root=root, url=archive.as_uri(), md5=md5)
    (root / "cifar-10-python.tar.gz").unlink()
    d2 = load_dataset("cifar10", root=root, download=False, md5=md5)
    assert torch.equal(d1.x_train, d2.x_train) and torch.equal(d1.y_test, d2.y_test)


def test_cifar100_uses_fine_labels(tmp_path):
    archive, md5, rows, labels = make_cifar_archive(tmp_path / "c100.tar.gz", "cifar100", n=5)
    d = load_dataset("cifar100", root=tmp_path / "data", url=archive.as_uri(), md5=md5)
    assert d.num_classes == 100 and len(d.classes) == 100
    assert d.x_train.shape == (5, 3, 32, 32) and d.x_test.shape == (5, 3, 32, 32)
    assert d.y_train.tolist() == labels["cifar-100-python/train"]
    assert torch.equal(d.x_test.reshape(5, -1), torch.from_numpy(rows["cifar-100-python/test"]))


def test_download_with_right_md5_copies_bytes(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello" * 1000)
    dest = download(src.as_uri(), tmp_path / "out" / "x.bin", hashlib.md5(src.read_bytes()).hexdigest())
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["x.bin"]


def test_download_wrong_md5_raises_and_leaves_no_file(tmp_path):
    archive, md5, _, _ = make_cifar_archive(tmp_path / "src.tar.gz")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=f"expected {'0' * 32}, got {md5}"):
        download(archive.as_uri(), out / "cifar-10-python.tar.gz", "0" * 32)
    assert list(out.iterdir()) == []
    with pytest.raises(DataError, match="md5 mismatch"):
        load_dataset("cifar10", root=out, url=archive.as_uri(), md5="0" * 32)
    assert list(out.iterdir()) == []


def test_download_missing_url_raises(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        download((tmp_path / "absent.tar.gz").as_uri(), tmp_path / "out" / "x", "0" * 32)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_members"])
def test_corrupt_archive_raises(tmp_path, damage):
    archive, _, _, _ = make_cifar_archive(tmp_path / "src.tar.gz")
    blob = archive.read_bytes()
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "garbage":
        blob = b"not a gzip file at all" * 10
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            add_pickle(tf, "cifar-10-batches-py/data_batch_1", {b"data": np.zeros((1, 3072), np.uint8)})
        blob = buf.getvalue()
    archive.write_bytes(blob)
    md5 = hashlib.md5(blob).hexdigest()
    with pytest.raises(DataError, match="corrupt|lacks member"):
        load_dataset("cifar10", root=tmp_path / "data", url=archive.as_uri(), md5=md5)


def test_missing_archive_without_download_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match=r"not found at .*cifar-100-python.tar.gz.*curl"):
        load_dataset("cifar100", root=tmp_path, download=False)


def test_existing_archive_with_wrong_md5_raises(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"partial download")
    with pytest.raises(DataError, match="expected c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", root=tmp_path, download=False)


#############################################
#               Image folders               #
#############################################

def test_image_folder_loads_sorted_classes_and_then_reads_cache(tmp_path):
    folder = tmp_path / "imgs"
    images = make_image_folder(folder, ["zebra", "ant"])
    d = data.load_image_folder(folder)
    assert d.classes == ("ant", "zebra") and d.num_classes == 2
    assert d.x_train.shape == (4, 3, 4, 5) and d.x_test.shape == (4, 3, 4, 5)
    assert d.y_train.tolist() == [0, 0, 1, 1]
    assert torch.equal(d.x_train[2], torch.from_numpy(images["train", "zebra", 0]).permute(2, 0, 1))
    assert torch.equal(d.x_test[1], torch.from_numpy(images["test", "ant", 1]).permute(2, 0, 1))
    assert (tmp_path / "imgs.npz").is_file()

    for p in folder.rglob("*.png"):  # the cache alone must now suffice
        p.unlink()
    d2 = data.load_image_folder(folder)
    assert torch.equal(d.x_train, d2.x_train) and torch.equal(d.y_test, d2.y_test)


def test_image_folder_follows_given_class_order(tmp_path):
    folder = tmp_path / "imgs"
    make_image_folder(folder, ["a", "b"], per_class=1)
    d = data.load_image_folder(folder, classes=["b", "a"])
    assert d.classes == ("b", "a") and d.y_train.tolist() == [0, 1]


def test_image_folder_decodes_jpeg_and_grey_as_rgb(tmp_path):
    folder = tmp_path / "imgs"
    for split in ("train", "test"):
        write_image(folder / split / "a" / "0.jpg", np.full((6, 6, 3), 128, np.uint8))
        write_image(folder / split / "a" / "1.png", np.full((6, 6), 77, np.uint8))
    d = data.load_image_folder(folder)
    assert d.x_train.shape == (2, 3, 6, 6)
    assert (d.x_train[0].int() - 128).abs().max() <= 2  # JPEG is lossy
    assert (d.x_train[1] == 77).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="needs train/<class>/"):
        data.load_image_folder(tmp_path / "absent")
    folder = tmp_path / "imgs"
    make_image_folder(folder, ["a"], per_class=1)
    with pytest.raises(DataError, match="class folder .* not found"):
        data.load_image_folder(folder, classes=["a", "b"], cache=tmp_path / "c.npz")
    write_image(folder / "train" / "a" / "big.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="must have one size"):
        data.load_image_folder(folder, cache=tmp_path / "c2.npz")


@pytest.mark.parametrize("top", ["", "cifar10-jpeg/"])
def test_cifar10_jpeg_extracts_archive_in_cifar_label_order(tmp_path, top):
    src = tmp_path / "src"
    make_image_folder(src, data.CIFAR10_CLASSES, h=3, w=3, per_class=1)
    archive = tmp_path / "jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for split in ("train", "test"):
            tf.add(src / split, arcname=top + split)
    d = load_dataset("cifar10-jpeg", root=tmp_path / "data", archive=archive)
    assert d.classes == data.CIFAR10_CLASSES and d.name == "cifar10-jpeg"
    assert d.y_train.tolist() == list(range(10)) and d.x_test.shape == (10, 3, 3, 3)
    assert (tmp_path / "data" / "cifar10-jpeg" / "train" / "truck" / "0.png").is_file()
    assert (tmp_path / "data" / "cifar10-jpeg.npz").is_file()


def test_two_processes_extracting_at_once_both_succeed(tmp_path, monkeypatch):
    """Parallel runs on a fresh machine: the one that finishes second keeps the first's folder."""
    src = tmp_path / "src"
    make_image_folder(src, data.CIFAR10_CLASSES, h=3, w=3, per_class=1)
    archive, dest = tmp_path / "jpeg.tar.gz", tmp_path / "data" / "cifar10-jpeg"
    with tarfile.open(archive, "w:gz") as tf:
        for split in ("train", "test"):
            tf.add(src / split, arcname=split)
    real, calls = tarfile.TarFile.extractall, []

    def racing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            data.extract(archive, dest)  # the other process extracts and renames first
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", racing)
    assert data.extract(archive, dest) == dest and len(calls) == 2
    assert sorted(p.name for p in dest.iterdir()) == ["test", "train"]
    assert not list(dest.parent.glob("*.part*"))


def test_cifar10_jpeg_without_images_or_archive_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LCNN_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"no images at .*cifar10-jpeg and no .*absent.*set LCNN_SHARED_DATA"):
        load_dataset("cifar10-jpeg", root=tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_dataset("cifar10-jpeg", root=tmp_path, archive=tmp_path / "nope.tar.gz")


def test_shared_data_folder_is_the_env_var_else_shared_beside_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("LCNN_SHARED_DATA", str(tmp_path))
    assert data.shared_data_dir() == tmp_path
    monkeypatch.delenv("LCNN_SHARED_DATA")
    repo = Path(data.__file__).resolve().parents[1]
    assert data.shared_data_dir() == repo.parent / "shared" / "data"


#############################################
#            MNIST-5k and subsets           #
#############################################

@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k")


def test_mnist5k_is_split_400_100_per_class(mnist):
    assert mnist.num_classes == 10 and mnist.classes == tuple("0123456789")
    assert mnist.x_train.shape == (4000, 1, 28, 28) and mnist.x_test.shape == (1000, 1, 28, 28)
    assert torch.bincount(mnist.y_train).tolist() == [400] * 10
    assert torch.bincount(mnist.y_test).tolist() == [100] * 10
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    assert mnist.y_train[:20].unique().numel() > 1  # shuffled, not sorted by label
    assert not set(map(bytes, mnist.x_train.numpy())) & set(map(bytes, mnist.x_test.numpy()))


def test_mnist5k_stratified_subset_is_balanced_and_seeded(mnist):
    a = mnist.subset(n_train=200, n_test=50, seed=1)
    assert torch.bincount(a.y_train).tolist() == [20] * 10
    assert sorted(torch.bincount(a.y_test).tolist()) == [5] * 10
    b = mnist.subset(n_train=200, n_test=50, seed=1)
    c = mnist.subset(n_train=200, n_test=50, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    d = load_dataset("mnist5k", n_train=30, seed=1)
    assert len(d.y_train) == 30 and sorted(torch.bincount(d.y_train).tolist()) == [3] * 10


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.data())
def test_stratified_indices_are_as_equal_as_availability_allows(labels, draw):
    y = np.array(labels)
    n = draw.draw(st.integers(1, len(y)))
    i = stratified_indices(y, n, 5, seed=draw.draw(st.integers(0, 9)))
    assert len(i) == n == len(np.unique(i))
    counts, available = np.bincount(y[i], minlength=5), np.bincount(y, minlength=5)
    # a class below the largest count must have run out of examples
    short = counts < counts.max() - 1
    assert (counts[short] == available[short]).all()


def test_bad_requests_raise_data_error(mnist):
    with pytest.raises(DataError, match="unknown dataset 'cifar11'.*mnist5k, cifar10, cifar100"):
        load_dataset("cifar11")
    with pytest.raises(DataError, match="n_train=4001 but only 4000"):
        mnist.subset(n_train=4001)
    with pytest.raises(DataError, match="n_test must be a positive integer"):
        mnist.subset(n_test=0)


def test_dataset_to_device_copies(mnist):
    d = mnist.subset(n_train=10, n_test=10).to("cpu")
    assert d.x_train.device.type == "cpu" and "mnist5k" in repr(d)


#############################################
#          Batches and augmentation         #
#############################################

def images(n=64, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)  # no zeros: padding shows
    return x, torch.arange(n)


def test_eval_loader_returns_x_over_255_in_order():
    x, y = images(10)
    batches = list(Loader(x, y, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in batches]), x.float() / 255)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert batches[0][0].dtype == torch.float32
    assert len(Loader(x, y, 4, drop_last=True)) == 2
    assert [len(b) for b, _ in Loader(x, y, 4, drop_last=True)] == [4, 4]


def test_shuffled_loader_visits_every_example_once():
    x, y = images(10)
    got = torch.cat([b for _, b in Loader(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(got.tolist()) == list(range(10)) and got.tolist() != list(range(10))


def test_flip_mirrors_some_images_and_keeps_others():
    x, y = images()
    loader = Loader(x, y, 64, augment=True, pad=0, generator=torch.Generator().manual_seed(0))
    out, yb = next(iter(loader))
    ref = x[yb].float() / 255
    same = (out == ref).flatten(1).all(1)
    mirrored = (out == ref.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_crop_is_a_window_of_the_zero_padded_image():
    x, y = images(16)
    out, yb = next(iter(Loader(x, y, 16, augment=True, flip=False, pad=4,
                               generator=torch.Generator().manual_seed(0))))
    assert out.shape == (16, 3, 8, 8) and out.min() >= 0 and out.max() <= 1
    padded = torch.nn.functional.pad(x.float() / 255, (4, 4, 4, 4))
    shifted = 0
    for k in range(16):  # oracle: brute force over all 81 offsets
        windows = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(out[k], padded[k, :, dy:dy + 8, dx:dx + 8])]
        assert windows, f"image {k} is not a crop of its padded original"
        shifted += (4, 4) not in windows
    assert shifted > 0


def test_same_generator_seed_gives_same_batches():
    x, y = images()

    def run(seed):
        loader = Loader(x, y, 16, shuffle=True, augment=True, generator=torch.Generator().manual_seed(seed))
        return torch.cat([b for b, _ in loader])

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))


def test_loader_rejects_bad_input():
    x, y = images(4)
    with pytest.raises(DataError, match="uint8"):
        Loader(x.float(), y, 2)
    with pytest.raises(DataError, match="4 images but 3 labels"):
        Loader(x, y[:3], 2)
