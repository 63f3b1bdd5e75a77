"""CIFAR-10/100, Tiny ImageNet, ImageFolder and MNIST from fakes in their true on-disk formats; streaming; rotation.

Every fake is tiny (a few images a class) so the file runs in seconds; each test checks shapes,
labels and class names against the files, that the source tree is byte-identical afterwards, and
that bad input is one ``ReffAKDError`` line naming the offending path with nothing written.
"""

from __future__ import annotations

import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_fake_fashion_mnist, tree_digest
from reffakd.data import (
    BatchAugment,
    ImageFiles,
    StreamingBatches,
    TensorBatches,
    channel_stats,
    default_cache_dir,
    fits_in_memory,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_imagefolder,
    load_mnist,
    load_tiny_imagenet,
    make_batches,
    split_train_val,
)
from reffakd.data import files as files_module
from reffakd.data.augment import rotate
from reffakd.data.dataset import Split
from reffakd.errors import ReffAKDError


def expect_error(fn, *args, **kwargs) -> str:
    """Run and return the ReffAKDError's message (one line); any other outcome fails the test."""
    try:
        fn(*args, **kwargs)
    except ReffAKDError as exc:
        message = str(exc)
        assert "\n" not in message
        return message
    pytest.fail("bad input was accepted")


def cache_files() -> list[Path]:
    return [p for p in default_cache_dir().rglob("*") if p.is_file()] if default_cache_dir().exists() else []


# --------------------------------------------------------------------------- CIFAR


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_fake_cifar(parent: Path, variant: str = "cifar10", n: int = 12, seed: int = 0) -> Path:
    """The python archive layout, each batch a protocol-2 pickled dict as in the official release."""
    rng = np.random.default_rng(seed)
    if variant == "cifar10":
        folder = parent / "cifar-10-batches-py"
        batches = {f"data_batch_{i}": "labels" for i in range(1, 6)} | {"test_batch": "labels"}
        meta = ("batches.meta", {"num_cases_per_batch": n, "label_names": CIFAR10_NAMES, "num_vis": 3072})
        classes = 10
    else:
        folder = parent / "cifar-100-python"
        batches = {"train": "fine_labels", "test": "fine_labels"}
        meta = (
            "meta",
            {
                "fine_label_names": [f"fine {i}" for i in range(100)],
                "coarse_label_names": [f"coarse {i}" for i in range(20)],
            },
        )
        classes = 100
    folder.mkdir(parents=True)
    for name, key in batches.items():
        labels = [int(v) for v in rng.integers(0, classes, n)]
        entry = {
            "batch_label": name,
            key: labels,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        if variant == "cifar100":
            entry["coarse_labels"] = [v // 5 for v in labels]
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    return folder


def read_batches(folder: Path, names: list[str], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Independent reader (plain pickle, fine for the test's own files)."""
    entries = [pickle.loads((folder / n).read_bytes(), encoding="latin1") for n in names]
    return np.concatenate([e["data"] for e in entries]).reshape(-1, 3, 32, 32), np.concatenate(
        [e[key] for e in entries]
    )


def test_cifar10_folder_read_in_place(tmp_path: Path) -> None:
    folder = make_fake_cifar(tmp_path / "src")
    before = tree_digest(tmp_path / "src")
    for data_dir in (tmp_path / "src", folder):
        ds = load_cifar10(data_dir=data_dir, download=False)
        assert ds.name == "cifar10" and ds.class_names == tuple(CIFAR10_NAMES)
        assert tuple(ds.train_images.shape) == (60, 3, 32, 32) and tuple(ds.test_images.shape) == (12, 3, 32, 32)
        x, y = read_batches(folder, [f"data_batch_{i}" for i in range(1, 6)], "labels")
        np.testing.assert_array_equal(ds.train_images.numpy(), x)
        np.testing.assert_array_equal(ds.train_labels.numpy(), y)
        tx, ty = read_batches(folder, ["test_batch"], "labels")
        np.testing.assert_array_equal(ds.test_images.numpy(), tx)
        np.testing.assert_array_equal(ds.test_labels.numpy(), ty)
        assert ds.train_labels.dtype == torch.int64 and len(ds.mean) == 3
        assert (ds.mean, ds.std) == channel_stats(ds.train_images)
        assert "md5 differs" in ds.source and str(data_dir) in ds.source
        assert ds.augment == BatchAugment(pad=4, flip=True, rotation=15.0)
    assert tree_digest(tmp_path / "src") == before
    assert not cache_files()  # nothing copied


def test_cifar100_fine_labels_and_names(tmp_path: Path) -> None:
    folder = make_fake_cifar(tmp_path, "cifar100", n=30)
    ds = load_cifar100(data_dir=tmp_path, download=False)
    assert ds.num_classes == 100 and ds.class_names[:2] == ("fine 0", "fine 1")
    _, y = read_batches(folder, ["train"], "fine_labels")
    np.testing.assert_array_equal(ds.train_labels.numpy(), y)
    assert tuple(ds.train_images.shape) == (30, 3, 32, 32) and tuple(ds.test_images.shape) == (30, 3, 32, 32)
    assert load_dataset("cifar100", data_dir=tmp_path, download=False).class_names == ds.class_names


def test_cifar_tar_gz_is_extracted_into_the_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_fake_cifar(src)
    archive = tmp_path / "arch" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    before = tree_digest(archive.parent)
    in_place = load_cifar10(data_dir=src, download=False)
    for data_dir in (archive.parent, archive):
        ds = load_cifar10(data_dir=data_dir, download=False)
        assert torch.equal(ds.train_images, in_place.train_images) and torch.equal(ds.test_labels, in_place.test_labels)
        assert "extracted into the cache" in ds.source
    assert tree_digest(archive.parent) == before  # nothing extracted next to the archive
    extracted = {p.name for p in cache_files()}
    assert extracted == {
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    }


def test_cifar_corrupt_archive_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"not really gzip" * 50)
    assert str(archive) in expect_error(load_cifar10, data_dir=tmp_path, download=False)
    assert not cache_files()


def test_cifar_archive_without_the_batches(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    (tmp_path / "x.txt").write_text("hello")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "x.txt", arcname="x.txt")
    message = expect_error(load_cifar10, data_dir=tmp_path, download=False)
    assert str(archive) in message and "data_batch_1" in message
    assert not cache_files()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_cifar_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = make_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": _Exploit(marker)}, protocol=2))
    message = expect_error(load_cifar10, data_dir=tmp_path, download=False)
    assert str(folder / "data_batch_3") in message and "refusing" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"labels": [0] * 12, "data": np.zeros((12, 100), np.uint8)}, "3072"),
        ({"labels": [0] * 11, "data": np.zeros((12, 3072), np.uint8)}, "label"),
        ({"labels": [10] * 12, "data": np.zeros((12, 3072), np.uint8)}, "0..9"),
        (["not", "a", "dict"], "list"),
    ],
)
def test_cifar_malformed_batch(tmp_path: Path, entry, words: str) -> None:
    folder = make_fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    message = expect_error(load_cifar10, data_dir=tmp_path, download=False)
    assert str(folder / "test_batch") in message and words in message


def test_cifar_truncated_batch(tmp_path: Path) -> None:
    folder = make_fake_cifar(tmp_path)
    data = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(data[: len(data) // 2])
    assert str(folder / "data_batch_1") in expect_error(load_cifar10, data_dir=tmp_path, download=False)


def test_cifar_not_found_names_every_place(tmp_path: Path) -> None:
    message = expect_error(load_cifar100, data_dir=tmp_path, download=True)  # an explicit path: never a download
    assert f"data_dir {tmp_path} holds no cifar100 files" in message and "cifar-100-python" in message
    assert "download" not in message
    message = expect_error(load_cifar100, download=False)
    assert "data_dir (not given)" in message and "disabled" in message


def test_cifar_resized_on_request(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path)
    assert tuple(load_cifar10(data_dir=tmp_path, image_size=48, download=False).train_images.shape) == (60, 3, 48, 48)


# --------------------------------------------------------------------------- Tiny ImageNet

TINY_WNIDS = ["n09999999", "n01443537", "n02124075"]  # wnids.txt order is not sorted; labels follow the sorted order
TINY_WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n02124075": "Egyptian cat",
    "n09999999": "café, coffee house",
}


def jpeg(path: Path, rng: np.random.Generator, size: int = 64, gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, (size, size) if gray else (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def make_fake_tiny_imagenet(parent: Path, per_class: int = 3, val_per_class: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = parent / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (root / "words.txt").write_text(
        "n00001740\tentity\n" + "".join(f"{w}\t{n}\n" for w, n in TINY_WORDS.items()), encoding="utf-8"
    )
    for w in TINY_WNIDS:
        for i in range(per_class):
            jpeg(root / "train" / w / "images" / f"{w}_{i}.JPEG", rng, gray=(w == "n02124075" and i == 1))
        (root / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class))
        )
    lines = []
    for k in range(val_per_class * len(TINY_WNIDS)):
        w = TINY_WNIDS[k % len(TINY_WNIDS)]
        jpeg(root / "val" / "images" / f"val_{k}.JPEG", rng, gray=(k == 0))
        lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    jpeg(root / "test" / "images" / "test_0.JPEG", rng)
    return root


def pil_rgb(path: Path, size: int = 64) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img).transpose(2, 0, 1)


def test_tiny_imagenet_official_tree(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    before = tree_digest(tmp_path)
    ds = load_tiny_imagenet(data_dir=tmp_path, download=False)
    assert ds.name == "tiny-imagenet" and ds.class_names == ("goldfish", "Egyptian cat", "café")
    assert tuple(ds.train_images.shape) == (9, 3, 64, 64) and tuple(ds.test_images.shape) == (6, 3, 64, 64)
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # val_k belongs to TINY_WNIDS[k % 3], whose label is its place in the sorted list
    assert ds.test_labels.tolist() == [sorted(TINY_WNIDS).index(TINY_WNIDS[k % 3]) for k in range(6)]
    np.testing.assert_array_equal(
        ds.train_images[4].numpy(), pil_rgb(root / "train" / "n02124075" / "images" / "n02124075_1.JPEG")
    )
    gray = ds.test_images[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # grayscale JPEG made RGB
    np.testing.assert_array_equal(ds.test_images[3].numpy(), pil_rgb(root / "val" / "images" / "val_3.JPEG"))
    assert ds.augment == BatchAugment(pad=8, flip=True, rotation=15.0)
    assert "validation images" in ds.source and not ds.streaming
    assert tree_digest(tmp_path) == before
    cached = list((default_cache_dir() / "tiny-imagenet").glob("*.safetensors"))
    assert len(cached) == 1
    again = load_tiny_imagenet(data_dir=root, download=False)  # the folder itself works too
    assert "from the cache" in again.source
    assert torch.equal(again.train_images, ds.train_images) and torch.equal(again.test_images, ds.test_images)
    assert again.mean == ds.mean and list((default_cache_dir() / "tiny-imagenet").glob("*.safetensors")) == cached


def test_tiny_imagenet_resized_and_cache_follows_the_source(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    small = load_tiny_imagenet(data_dir=tmp_path, image_size=32, download=False)
    assert tuple(small.train_images.shape) == (9, 3, 32, 32) and small.augment.pad == 4
    np.testing.assert_array_equal(
        small.train_images[0].numpy(), pil_rgb(root / "train" / "n01443537" / "images" / "n01443537_0.JPEG", 32)
    )
    jpeg(root / "val" / "images" / "val_2.JPEG", np.random.default_rng(9))  # a replaced image: a fresh decode
    assert "from the cache" not in load_tiny_imagenet(data_dir=tmp_path, image_size=32, download=False).source


def test_tiny_imagenet_missing_annotation_file(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    (root / "val" / "val_annotations.txt").unlink()
    before = tree_digest(tmp_path)
    assert str(root / "val" / "val_annotations.txt") in expect_error(load_tiny_imagenet, data_dir=tmp_path)
    assert tree_digest(tmp_path) == before and not cache_files()


def test_tiny_imagenet_missing_wnids(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    (root / "wnids.txt").unlink()
    message = expect_error(load_tiny_imagenet, data_dir=tmp_path)
    assert "wnids.txt" in message and str(tmp_path) in message
    assert "needs data_dir" in expect_error(load_tiny_imagenet)


def test_tiny_imagenet_annotation_naming_an_unknown_wnid(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    ann = root / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn00000042\t0\t0\t1\t1\n")
    message = expect_error(load_tiny_imagenet, data_dir=tmp_path)
    assert "n00000042" in message and str(ann) in message and "line 7" in message
    assert not cache_files()


def test_tiny_imagenet_annotation_naming_a_missing_file(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    (root / "val" / "images" / "val_4.JPEG").unlink()
    assert str(root / "val" / "images" / "val_4.JPEG") in expect_error(load_tiny_imagenet, data_dir=tmp_path)


def test_tiny_imagenet_missing_class_folder_and_words(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    (root / "words.txt").write_text("n01443537\tgoldfish\n")
    assert "n02124075" in expect_error(load_tiny_imagenet, data_dir=tmp_path)
    (root / "words.txt").unlink()
    assert str(root / "words.txt") in expect_error(load_tiny_imagenet, data_dir=tmp_path)


def test_tiny_imagenet_unreadable_jpeg(tmp_path: Path) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    bad = root / "train" / "n01443537" / "images" / "n01443537_2.JPEG"
    bad.write_bytes(b"this is no jpeg")
    assert str(bad) in expect_error(load_tiny_imagenet, data_dir=tmp_path)
    assert not cache_files()


# --------------------------------------------------------------------------- ImageFolder

AWKWARD = ("café crème", "with space", "Ünïcode")  # already in sorted order


def png(path: Path, rng: np.random.Generator, h: int = 30, w: int = 30, gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)).save(path)


def make_fake_folder(root: Path, per_class: int = 5, gray: str = "some", seed: int = 0) -> Path:
    """PNGs of mixed sizes (mostly 30x30), RGB and grayscale, one class with a nested folder, plus clutter."""
    rng = np.random.default_rng(seed)
    for c, cls in enumerate(AWKWARD):
        for i in range(per_class):
            is_gray = gray == "all" or (gray == "some" and i == 0)
            h, w = (30, 30) if i < per_class - 1 else (20 + 4 * c, 26)
            sub = "nested/deeper/" if (c == 1 and i == 2) else ""
            png(root / cls / f"{sub}img {i}.png", rng, h, w, is_gray)
        (root / cls / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    return root


def pil_decode(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def test_imagefolder_awkward_names_mixed_sizes_carved_test(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=5)
    before = tree_digest(root)
    ds = load_imagefolder(data_dir=root)
    assert ds.class_names == AWKWARD and ds.name == "imagefolder"
    assert ds.in_channels == 3 and ds.image_size == (32, 32)  # most common 30x30, rounded to a multiple of 8
    assert len(ds.train_labels) + len(ds.test_labels) == 15
    assert torch.bincount(ds.test_labels, minlength=3).tolist() == [1, 1, 1]  # 20% of 5 per class
    assert "carved" in ds.source and "seed 0" in ds.source
    assert ds.augment == BatchAugment(pad=4, flip=True, rotation=0.0)
    assert tree_digest(root) == before
    again = load_imagefolder(data_dir=root)
    assert torch.equal(again.test_images, ds.test_images) and torch.equal(again.train_labels, ds.train_labels)
    other = load_imagefolder(data_dir=root, split_seed=1)
    assert not torch.equal(other.test_images, ds.test_images)
    # pixels: the files decoded and resized by PIL
    files = ImageFiles(root, [f"{c}/img {i}.png" for c in AWKWARD for i in (0, 4)], 3, (32, 32))
    all_images = torch.cat([ds.train_images, ds.test_images])
    for i in range(len(files)):
        want = torch.from_numpy(pil_decode(files.path(i), 3, (32, 32)).copy())
        assert bool((all_images == want).flatten(1).all(1).any()), files.path(i)


def test_imagefolder_grayscale_and_explicit_size(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "gray", gray="all")
    ds = load_imagefolder(data_dir=root, image_size=(16, 24))
    assert ds.in_channels == 1 and ds.image_size == (16, 24) and len(ds.mean) == 1
    assert ds.augment.pad == 2 and "grayscale 16x24" in ds.source


def test_imagefolder_train_and_test_folders(tmp_path: Path) -> None:
    make_fake_folder(tmp_path / "d" / "train", per_class=4)
    make_fake_folder(tmp_path / "d" / "test", per_class=2, seed=1)
    ds = load_imagefolder(data_dir=tmp_path / "d")
    assert ds.class_names == AWKWARD and len(ds.train_labels) == 12 and len(ds.test_labels) == 6
    assert ds.test_labels.tolist() == [0, 0, 1, 1, 2, 2] and "test set:" in ds.source
    explicit = load_imagefolder(data_dir=tmp_path / "d" / "train", test_dir=tmp_path / "d" / "test")
    assert torch.equal(explicit.test_images, ds.test_images) and torch.equal(explicit.train_images, ds.train_images)


def test_imagefolder_test_folder_with_an_unknown_class(tmp_path: Path) -> None:
    make_fake_folder(tmp_path / "d" / "train", per_class=2)
    png(tmp_path / "d" / "test" / "stranger" / "a.png", np.random.default_rng(0))
    png(tmp_path / "d" / "test" / "café crème" / "a.png", np.random.default_rng(0))
    message = expect_error(load_imagefolder, data_dir=tmp_path / "d")
    assert "stranger" in message and str(tmp_path / "d" / "test") in message


def test_imagefolder_one_class(tmp_path: Path) -> None:
    png(tmp_path / "only" / "a.png", np.random.default_rng(0))
    message = expect_error(load_imagefolder, data_dir=tmp_path)
    assert str(tmp_path) in message and "'only'" in message and "at least 2" in message


def test_imagefolder_empty_class_folder(tmp_path: Path) -> None:
    make_fake_folder(tmp_path, per_class=2)
    (tmp_path / "empty one").mkdir()
    (tmp_path / "empty one" / "readme.txt").write_text("no images here")
    assert str(tmp_path / "empty one") in expect_error(load_imagefolder, data_dir=tmp_path)
    assert not cache_files()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_imagefolder_unreadable_image_names_the_file(tmp_path: Path, damage: str) -> None:
    make_fake_folder(tmp_path, per_class=3)
    bad = tmp_path / "Ünïcode" / "img 1.png"
    data = bad.read_bytes()
    bad.write_bytes({"garbage": b"\x89PNG but not really", "truncated": data[: len(data) // 2], "empty": b""}[damage])
    before = tree_digest(tmp_path)
    assert str(bad) in expect_error(load_imagefolder, data_dir=tmp_path)
    assert tree_digest(tmp_path) == before and not cache_files()


def test_imagefolder_no_images_at_all(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    assert "holds no images" in expect_error(load_imagefolder, data_dir=tmp_path / "nothing")
    png(tmp_path / "loose" / "a.png", np.random.default_rng(0))
    assert "no class folders" in expect_error(load_imagefolder, data_dir=tmp_path / "loose")
    assert "not a folder" in expect_error(load_imagefolder, data_dir=tmp_path / "missing")
    assert "needs data_dir" in expect_error(load_imagefolder)


# --------------------------------------------------------------------------- MNIST


def test_mnist_from_idx_files(tmp_path: Path) -> None:
    folder = make_fake_fashion_mnist(tmp_path / "mnist", n_train=50, n_test=20)
    before = tree_digest(folder)
    ds = load_mnist(data_dir=folder, download=False)
    assert ds.name == "mnist" and ds.class_names[0] == "0 - zero" and ds.num_classes == 10
    assert tuple(ds.train_images.shape) == (50, 1, 32, 32) and tuple(ds.test_images.shape) == (20, 1, 32, 32)
    assert ds.augment == BatchAugment(pad=4, flip=False)  # digits are never mirrored
    assert tree_digest(folder) == before
    assert list((default_cache_dir() / "mnist").rglob("MNIST/raw/train-images-idx3-ubyte"))


def test_mnist_torchvision_layout_in_place_and_not_found(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path / "tv" / "MNIST" / "raw", n_train=30, n_test=10, compress=False)
    before = tree_digest(tmp_path / "tv")
    ds = load_dataset("mnist", data_dir=tmp_path / "tv", download=False)
    assert len(ds.train_labels) == 30 and tree_digest(tmp_path / "tv") == before and not cache_files()
    message = expect_error(load_mnist, data_dir=tmp_path / "tv" / "MNIST", download=False)
    assert message.startswith(f"data_dir {tmp_path / 'tv' / 'MNIST'} holds no MNIST files")  # never a fallback
    assert "Debian" not in message and "download" not in message


# --------------------------------------------------------------------------- streaming


def test_fits_in_memory() -> None:
    assert fits_in_memory(100, 3, 32, 32, budget_bytes=100 * 3 * 32 * 32)
    assert not fits_in_memory(101, 3, 32, 32, budget_bytes=100 * 3 * 32 * 32)
    assert fits_in_memory(10, 1, 8, 8)  # against the machine's available RAM


def test_streamed_dataset_is_the_same_data(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=6)
    memory = load_imagefolder(data_dir=root)
    streamed = load_imagefolder(data_dir=root, streaming=True)
    assert streamed.streaming and isinstance(streamed.train_images, ImageFiles) and "streamed" in streamed.source
    assert streamed.train_images.shape == tuple(memory.train_images.shape)
    assert torch.equal(streamed.train_images.to_tensor(), memory.train_images)
    assert (streamed.mean, streamed.std) == (memory.mean, memory.std)  # a small set: the sample is all of it
    cached = cache_files()
    assert len(cached) == 1  # the in-memory load's decode cache...
    load_imagefolder(data_dir=root, image_size=24, streaming=True)
    assert cache_files() == cached  # ...and streaming writes none


def test_automatic_choice_streams_when_it_would_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_fake_tiny_imagenet(tmp_path)
    monkeypatch.setattr(files_module, "fits_in_memory", lambda *a, **k: False)
    ds = load_tiny_imagenet(data_dir=root)
    assert ds.streaming and isinstance(ds.test_images, ImageFiles)
    splits = split_train_val(ds, 3, seed=0)
    assert splits.streaming and isinstance(splits.train.images, ImageFiles) and len(splits.train) == 6
    assert splits.in_channels == 3 and splits.image_size == (64, 64) and splits.augment == ds.augment


@pytest.mark.parametrize("num_workers", [0, 1])
def test_streaming_batches_match_tensor_batches(tmp_path: Path, num_workers: int) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=8)
    memory = split_train_val(load_imagefolder(data_dir=root), 4, seed=3)
    streamed = split_train_val(load_imagefolder(data_dir=root, streaming=True), 4, seed=3)
    assert torch.equal(memory.train.labels, streamed.train.labels)
    normalize = (memory.mean, memory.std)
    for augment in (None, BatchAugment(pad=4, flip=True, rotation=15.0)):
        kw = dict(shuffle=True, augment=augment, normalize=normalize, drop_last=True)
        a = TensorBatches(memory.train, 5, generator=torch.Generator().manual_seed(7), **kw)
        b = make_batches(streamed.train, 5, generator=torch.Generator().manual_seed(7), num_workers=num_workers, **kw)
        assert isinstance(b, StreamingBatches) and len(a) == len(b) == len(memory.train) // 5 >= 2
        assert a.num_samples == b.num_samples
        for _epoch in range(2):
            pairs = list(zip(a, b, strict=True))
            assert len(pairs) == len(a)
            for (xa, ya), (xb, yb) in pairs:
                assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert isinstance(make_batches(memory.val, 4, num_workers=2), TensorBatches)
    unshuffled = torch.cat([x for x, _ in StreamingBatches(streamed.test, 4, num_workers=num_workers)])
    torch.testing.assert_close(unshuffled, memory.test.images.float() / 255.0)


def test_streaming_names_an_image_that_fails_to_decode(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=3)
    bad = root / "with space" / "img 1.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # the header still reads: the error shows when the pixels are decoded
    assert str(bad) in expect_error(load_imagefolder, data_dir=root, streaming=True)  # the statistics sample decodes it
    names = [f"{c}/img {i}.png" for c in AWKWARD for i in range(3)]
    split = Split(ImageFiles(root, names, 3, (32, 32)), torch.arange(len(names)))
    for workers in (0, 1):
        assert str(bad) in expect_error(lambda w=workers: list(StreamingBatches(split, 4, num_workers=w)))


# --------------------------------------------------------------------------- augmentation: rotation, statistics


def test_rotation_by_right_angles_is_exact() -> None:
    x = torch.randint(0, 256, (4, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.int64).to(
        torch.uint8
    )
    assert torch.equal(rotate(x, torch.full((4,), math.pi / 2, dtype=torch.float64)), torch.rot90(x, 1, (2, 3)))
    y = x[:, :, :6, :]  # non-square: 180 degrees is both flips
    assert torch.equal(rotate(y, torch.full((4,), math.pi, dtype=torch.float64)), y.flip(-1).flip(-2))
    assert torch.equal(rotate(y, torch.zeros(4, dtype=torch.float64)), y)


def test_rotation_of_a_non_square_image_keeps_distances() -> None:
    img = torch.zeros(1, 1, 9, 17, dtype=torch.uint8)
    img[0, 0, 4, 11] = 255  # 3 pixels right of the centre (4, 8)
    out = rotate(img, torch.tensor([math.pi / 2], dtype=torch.float64))
    assert divmod(int(out.flatten().argmax()), 17) == (1, 8)  # now 3 pixels above it


def test_augment_with_rotation_is_seeded_and_bounded() -> None:
    x = torch.full((64, 1, 16, 16), 200, dtype=torch.uint8)
    aug = BatchAugment(pad=0, flip=False, rotation=15.0)
    out = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(1))) and out.dtype == torch.uint8
    assert bool((out[:, :, 4:12, 4:12] == 200).all())  # the centre stays inside the image at 15 degrees
    assert bool((out[:, :, 0, 0] < 200).any())  # corners rotate out
    dot = torch.zeros(200, 1, 33, 33, dtype=torch.uint8)
    dot[:, :, 16, 31] = 255  # 15 pixels right of the centre: where it lands gives the angle
    where = aug(dot, torch.Generator().manual_seed(3)).flatten(1).argmax(1)
    rows, cols = where // 33, where % 33
    angles = torch.rad2deg(torch.atan2(16 - rows.double(), cols.double() - 16))
    assert float(angles.abs().max()) <= 15 + 4 and float(angles.max()) > 10 and float(angles.min()) < -10
    plain = BatchAugment(pad=4, flip=True)
    assert torch.equal(
        BatchAugment(pad=4, flip=True, rotation=0.0)(x, torch.Generator().manual_seed(2)),
        plain(x, torch.Generator().manual_seed(2)),
    )


def test_channel_stats_over_several_chunks() -> None:
    images = torch.randint(0, 256, (5000, 2, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.int64).to(
        torch.uint8
    )
    mean, std = channel_stats(images)
    x = images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3), ddof=1), atol=1e-6)
