"""The data stage: finding and reading Fashion-MNIST, the validation split, augmentation and batching.

Everything runs on the tiny IDX files of ``conftest.make_fake_fashion_mnist`` except the
``real_data`` tests, which need Debian's ``dataset-fashion-mnist`` and skip without it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FASHION_MNIST_CLASSES, idx_bytes, make_fake_fashion_mnist, tree_digest
from reffakd.data import (
    BatchAugment,
    ImageDataset,
    TensorBatches,
    channel_stats,
    default_cache_dir,
    load_fashion_mnist,
    split_train_val,
)
from reffakd.data import fashion_mnist as fm
from reffakd.data.dataset import Split
from reffakd.errors import ReffAKDError

TORCHVISION_CLASSES = FASHION_MNIST_CLASSES
N_TRAIN, N_TEST = 400, 100  # make_fake_fashion_mnist's defaults


def read_idx_gz(path: Path) -> np.ndarray:
    """An independent IDX reader (ubyte only): magic, big-endian dims, data."""
    raw = gzip.decompress(path.read_bytes())
    zero, zero2, kind, ndim = struct.unpack(">BBBB", raw[:4])
    assert (zero, zero2, kind) == (0, 0, 0x08)
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def check_dataset(ds: ImageDataset, n_train: int = N_TRAIN, n_test: int = N_TEST, size: int = 32) -> None:
    assert ds.name == "fashion-mnist"
    assert tuple(ds.train_images.shape) == (n_train, 1, size, size)
    assert tuple(ds.test_images.shape) == (n_test, 1, size, size)
    assert ds.train_images.dtype == torch.uint8 and ds.test_images.dtype == torch.uint8
    assert tuple(ds.train_labels.shape) == (n_train,) and tuple(ds.test_labels.shape) == (n_test,)
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.dtype == torch.int64
    assert ds.class_names == TORCHVISION_CLASSES
    assert ds.num_classes == 10 and ds.in_channels == 1 and ds.image_size == (size, size)
    assert int(ds.train_labels.min()) >= 0 and int(ds.train_labels.max()) <= 9
    assert len(ds.mean) == 1 and len(ds.std) == 1 and 0 < ds.mean[0] < 1 and 0 < ds.std[0] < 1


# --------------------------------------------------------------------------- loading, three layouts


def test_gz_files_in_a_folder(fake_fmnist: Path) -> None:
    before = tree_digest(fake_fmnist)
    ds = load_fashion_mnist(data_dir=fake_fmnist, download=False)
    check_dataset(ds)
    assert str(fake_fmnist) in ds.source and "--data-dir" in ds.source
    assert tree_digest(fake_fmnist) == before
    # Decompressed into the cache, never next to the source.
    assert list((default_cache_dir() / "fashion-mnist").rglob("train-images-idx3-ubyte"))


def test_native_size_pixels_and_labels_are_the_files_contents(fake_fmnist: Path) -> None:
    ds = load_fashion_mnist(data_dir=fake_fmnist, image_size=28, download=False)
    check_dataset(ds, size=28)
    for split, images, labels in (
        ("train", ds.train_images, ds.train_labels),
        ("t10k", ds.test_images, ds.test_labels),
    ):
        np.testing.assert_array_equal(images[:, 0].numpy(), read_idx_gz(fake_fmnist / f"{split}-images-idx3-ubyte.gz"))
        np.testing.assert_array_equal(
            labels.numpy(), read_idx_gz(fake_fmnist / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
        )


def test_torchvision_layout_is_read_in_place(tmp_path: Path) -> None:
    root = tmp_path / "tv"
    make_fake_fashion_mnist(root / "FashionMNIST" / "raw", compress=False)
    before = tree_digest(root)
    ds = load_fashion_mnist(data_dir=root, download=False)
    check_dataset(ds)
    assert tree_digest(root) == before  # nothing added (no processed/ folder), nothing changed
    assert not (default_cache_dir() / "fashion-mnist").exists()  # nothing copied into the cache


def test_uncompressed_files_directly_in_the_folder(tmp_path: Path) -> None:
    folder = make_fake_fashion_mnist(tmp_path / "flat", compress=False)
    before = tree_digest(folder)
    ds = load_fashion_mnist(data_dir=folder, download=False)
    check_dataset(ds)
    assert tree_digest(folder) == before


def test_all_layouts_give_the_same_tensors(tmp_path: Path, fake_fmnist: Path) -> None:
    gz = load_fashion_mnist(data_dir=fake_fmnist, download=False)
    flat = load_fashion_mnist(data_dir=make_fake_fashion_mnist(tmp_path / "flat", compress=False), download=False)
    make_fake_fashion_mnist(tmp_path / "tv" / "FashionMNIST" / "raw", compress=False)
    tv = load_fashion_mnist(data_dir=tmp_path / "tv", download=False)
    for other in (flat, tv):
        assert torch.equal(gz.train_images, other.train_images) and torch.equal(gz.test_images, other.test_images)
        assert torch.equal(gz.train_labels, other.train_labels) and torch.equal(gz.test_labels, other.test_labels)
        assert gz.mean == other.mean and gz.std == other.std


def test_second_load_uses_the_cache_and_agrees(fake_fmnist: Path) -> None:
    first = load_fashion_mnist(data_dir=fake_fmnist, download=False)
    second = load_fashion_mnist(data_dir=fake_fmnist, download=False)
    assert torch.equal(first.train_images, second.train_images)
    assert len(list((default_cache_dir() / "fashion-mnist").iterdir())) == 1


# --------------------------------------------------------------------------- where the files come from


def test_nothing_found_names_all_three_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = tmp_path / "no-debian"
    debian.mkdir()
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    with pytest.raises(ReffAKDError) as info:
        load_fashion_mnist(download=False)
    message = str(info.value)
    assert "\n" not in message
    assert "data_dir (not given)" in message
    assert str(debian) in message and "dataset-fashion-mnist" in message
    assert "torchvision download" in message and "disabled" in message
    assert message.index("data_dir") < message.index(str(debian)) < message.index("torchvision download")


def test_an_empty_data_dir_is_an_error_never_a_fallback(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit path is the only place looked at: an empty one is not a reason to train on another copy."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(fm, "DEBIAN_DIR", fake_fmnist)  # a copy that would load
    with pytest.raises(ReffAKDError, match=f"data_dir {empty} holds no Fashion-MNIST files") as info:
        load_fashion_mnist(data_dir=empty, download=True)
    assert "Debian" not in str(info.value) and "download" not in str(info.value)


def test_missing_data_dir_folder_is_an_error_too(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit data_dir that is not there is an error of its own, never a fallback to another copy."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", fake_fmnist)  # a copy that would load
    with pytest.raises(ReffAKDError, match="does-not-exist is not a folder: it does not exist"):
        load_fashion_mnist(data_dir=tmp_path / "does-not-exist", download=False)


def test_incomplete_data_dir_is_not_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_fake_fashion_mnist(tmp_path / "partial")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(ReffAKDError, match="holds no Fashion-MNIST files"):
        load_fashion_mnist(data_dir=folder, download=False)


def test_debian_copy_is_used_without_data_dir(fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "DEBIAN_DIR", fake_fmnist)
    before = tree_digest(fake_fmnist)
    ds = load_fashion_mnist(download=False)
    check_dataset(ds)
    assert "Debian" in ds.source and str(fake_fmnist) in ds.source
    assert tree_digest(fake_fmnist) == before


def test_data_dir_comes_before_the_debian_copy(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fm, "DEBIAN_DIR", fake_fmnist)
    mine = make_fake_fashion_mnist(tmp_path / "mine", n_train=200, n_test=50, seed=1)
    ds = load_fashion_mnist(data_dir=mine, download=False)
    check_dataset(ds, n_train=200, n_test=50)
    assert ds.source.startswith("--data-dir")


# --------------------------------------------------------------------------- corrupt files


def corrupt_copy(tmp_path: Path) -> Path:
    return make_fake_fashion_mnist(tmp_path / "corrupt")


def load_expecting_error(folder: Path) -> str:
    """Load and return the ReffAKDError's message; any other exception fails the test."""
    try:
        load_fashion_mnist(data_dir=folder, download=False)
    except ReffAKDError as exc:
        message = str(exc)
        assert "\n" not in message
        return message
    pytest.fail("a corrupt file was loaded without error")


def test_truncated_gz_names_the_file(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = tree_digest(folder)
    message = load_expecting_error(folder)
    assert str(path) in message
    assert tree_digest(folder) == before
    # No half-decompressed file is left in the cache to be picked up next time.
    assert not list((default_cache_dir() / "fashion-mnist").rglob("train-images-idx3-ubyte"))
    # ...so a second attempt fails the same way rather than reading a stale partial copy.
    assert str(path) in load_expecting_error(folder)


def test_file_that_is_not_gzip(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data\n" * 10)
    assert str(path) in load_expecting_error(folder)


def test_damaged_deflate_stream(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[50:58] = b"\xff" * 8  # inside the compressed stream: zlib.error "invalid bit length repeat"
    path.write_bytes(bytes(data))
    assert str(path) in load_expecting_error(folder)


def test_valid_gz_holding_garbage(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"garbage, not an IDX file " * 200)
    message = load_expecting_error(folder)
    assert "corrupt" in message and str(folder) in message


def test_empty_gz(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb"):
        pass
    assert "corrupt" in load_expecting_error(folder)


def test_idx_header_promising_more_images_than_the_file_holds(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", 4_000_000, 28, 28) + bytes(1000))
    assert "corrupt" in load_expecting_error(folder)


def test_label_count_not_matching_images(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros(N_TRAIN - 1, dtype=np.uint8)))
    message = load_expecting_error(folder)
    assert "train" in message and str(N_TRAIN - 1) in message


def test_images_of_the_wrong_size(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros((N_TEST, 32, 32), dtype=np.uint8)))
    assert "t10k" in load_expecting_error(folder)


def test_labels_out_of_range(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.full(N_TEST, 12, dtype=np.uint8)))
    assert "0..9" in load_expecting_error(folder)


def test_fixed_file_replaces_the_cached_copy(tmp_path: Path) -> None:
    folder = corrupt_copy(tmp_path)
    good = make_fake_fashion_mnist(tmp_path / "good")
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"garbage, not an IDX file " * 200)  # decompresses fine, so the garbage lands in the cache
    load_expecting_error(folder)
    os.utime(good / "train-images-idx3-ubyte.gz", (1e9, 1e9))  # e.g. restored with cp -p or from a tar
    shutil.copy2(good / "train-images-idx3-ubyte.gz", folder / "train-images-idx3-ubyte.gz")
    check_dataset(load_fashion_mnist(data_dir=folder, download=False))


def test_uncompressed_garbage_in_torchvision_layout(tmp_path: Path) -> None:
    raw = make_fake_fashion_mnist(tmp_path / "tv" / "FashionMNIST" / "raw", compress=False)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00" * 3)
    before = tree_digest(tmp_path / "tv")
    assert "corrupt" in load_expecting_error(tmp_path / "tv")
    assert tree_digest(tmp_path / "tv") == before


# --------------------------------------------------------------------------- the validation split


def indexed_dataset(n: int = 50) -> ImageDataset:
    """Image i is filled with i and labelled i, so every split row can be traced to its source."""
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 4, 4).contiguous()
    labels = torch.arange(n, dtype=torch.int64)
    return ImageDataset(
        "toy", images, labels, images[:5], labels[:5], tuple(str(i) for i in range(n)), "test", (0.5,), (0.25,)
    )


def test_split_is_a_seeded_partition() -> None:
    ds = indexed_dataset(50)
    a, b, other = split_train_val(ds, 12, seed=3), split_train_val(ds, 12, seed=3), split_train_val(ds, 12, seed=4)
    assert torch.equal(a.val.labels, b.val.labels) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.val.labels, other.val.labels)
    assert len(a.val) == 12 and len(a.train) == 38
    val, train = set(a.val.labels.tolist()), set(a.train.labels.tolist())
    assert not val & train
    assert val | train == set(range(50))
    for part in (a.train, a.val):  # images travel with their labels
        assert torch.equal(part.images, ds.train_images[part.labels])
    assert torch.equal(a.test.images, ds.test_images) and torch.equal(a.test.labels, ds.test_labels)
    assert a.class_names == ds.class_names and a.mean == ds.mean and a.std == ds.std and a.dataset == "toy"


@pytest.mark.parametrize("val_size", [0, -1, 50, 51])
def test_split_size_out_of_range(val_size: int) -> None:
    with pytest.raises(ReffAKDError, match="val_size"):
        split_train_val(indexed_dataset(50), val_size, seed=0)


def test_split_extremes_are_allowed() -> None:
    ds = indexed_dataset(50)
    assert len(split_train_val(ds, 1, 0).val) == 1
    assert len(split_train_val(ds, 49, 0).train) == 1


# --------------------------------------------------------------------------- augmentation


def random_images(b: int = 16, c: int = 1, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.int64).to(
        torch.uint8
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def crop_offsets(image: torch.Tensor, out: torch.Tensor, pad: int) -> list[tuple[int, int]]:
    """Every (row, col) offset at which ``out`` is a crop of the zero-padded ``image``."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    return [
        (r, c)
        for r in range(2 * pad + 1)
        for c in range(2 * pad + 1)
        if torch.equal(padded[:, r : r + h, c : c + w], out)
    ]


def test_augment_keeps_shape_and_dtype() -> None:
    x = random_images(8, 3, 12, 10)
    for aug in (BatchAugment(), BatchAugment(pad=2, flip=False), BatchAugment(pad=0, flip=True)):
        out = aug(x, gen())
        assert out.shape == x.shape and out.dtype == torch.uint8


def test_augment_without_crop_or_flip_is_identity() -> None:
    x = random_images()
    assert torch.equal(BatchAugment(pad=0, flip=False)(x, gen()), x)


def test_crop_is_a_crop_of_the_zero_padded_image() -> None:
    x = random_images(32, 2, 12, 10)
    out = BatchAugment(pad=4, flip=False)(x, gen(1))
    offsets = []
    for i in range(8):
        found = crop_offsets(x[i], out[i], 4)
        assert found, f"output {i} is no crop of the padded input"
        offsets.append(found[0])
    # The offsets vary (not always the centre crop).
    assert len(set(offsets)) > 1


def test_crop_offsets_cover_the_whole_range() -> None:
    # 600 8x8 images of distinct non-zero pixels: every crop identifies its offset uniquely.
    x = torch.arange(1, 65, dtype=torch.uint8).view(1, 1, 8, 8).repeat(600, 1, 1, 1)
    out = BatchAugment(pad=4, flip=False)(x, gen(2))
    padded = torch.nn.functional.pad(x[0], (4, 4, 4, 4))
    crops = torch.stack([padded[:, r : r + 8, c : c + 8] for r in range(9) for c in range(9)])  # (81, 1, 8, 8)
    match = (out[:, None] == crops[None]).flatten(2).all(2)  # (600, 81)
    assert bool((match.sum(1) == 1).all())
    seen = match.any(0).view(9, 9)
    assert bool(seen.any(1).all()) and bool(seen.any(0).all())  # rows 0..8 and columns 0..8 all occur


def test_flip_only_gives_the_image_or_its_mirror() -> None:
    x = random_images(64, 1, 8, 8)
    out = BatchAugment(pad=0, flip=True)(x, gen(3))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert bool(same.any()) and bool(mirrored.any())


def test_same_seed_same_augmentation() -> None:
    x = random_images(32, 1, 12, 12)
    aug = BatchAugment()
    assert torch.equal(aug(x, gen(7)), aug(x, gen(7)))
    assert not torch.equal(aug(x, gen(7)), aug(x, gen(8)))


# --------------------------------------------------------------------------- batching


def indexed_split(n: int = 37, c: int = 1) -> Split:
    images = torch.randint(0, 256, (n, c, 6, 6), generator=gen(5), dtype=torch.int64).to(torch.uint8)
    return Split(images, torch.arange(n))


def test_shuffled_epoch_covers_every_index_once() -> None:
    split = indexed_split(37)
    batches = TensorBatches(split, 8, shuffle=True, generator=gen(0))
    epochs = []
    for _ in range(2):
        labels = []
        for x, y in batches:
            assert torch.equal(x, split.images[y].float() / 255)  # images stay with their labels
            labels.append(y)
        order = torch.cat(labels)
        assert sorted(order.tolist()) == list(range(37))
        epochs.append(order)
    assert not torch.equal(epochs[0], torch.arange(37))  # actually shuffled
    assert not torch.equal(epochs[0], epochs[1])  # a new order each epoch


def test_unshuffled_batches_in_order_and_scaled_to_unit_range() -> None:
    split = indexed_split(37)
    batches = list(TensorBatches(split, 10))
    assert [len(y) for _, y in batches] == [10, 10, 10, 7]
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.arange(37))
    torch.testing.assert_close(x, split.images.float() / 255.0)


def test_normalize_per_channel() -> None:
    split = indexed_split(20, c=3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    x = torch.cat([b[0] for b in TensorBatches(split, 6, normalize=(mean, std))])
    want = (split.images.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(x.double(), want, atol=1e-5, rtol=1e-5)


def test_len_with_and_without_drop_last() -> None:
    split = indexed_split(37)
    for batch_size, full, floor in ((8, 5, 4), (37, 1, 1), (10, 4, 3), (50, 1, 0), (1, 37, 37)):
        keep = TensorBatches(split, batch_size)
        drop = TensorBatches(split, batch_size, shuffle=True, drop_last=True)
        assert len(keep) == full and len(list(keep)) == full
        assert len(drop) == floor and len(list(drop)) == floor
        assert all(len(y) == batch_size for _, y in drop)
        assert keep.num_samples == 37


def test_augmented_batches_stay_uint8_sized() -> None:
    split = indexed_split(16)
    for x, y in TensorBatches(split, 5, shuffle=True, augment=BatchAugment(pad=2), generator=gen(0)):
        assert x.shape == (len(y), 1, 6, 6) and x.dtype == torch.float32
        assert float(x.min()) >= 0 and float(x.max()) <= 1


# --------------------------------------------------------------------------- channel statistics


def test_channel_stats_matches_numpy() -> None:
    images = torch.randint(0, 256, (9, 3, 5, 7), generator=gen(11), dtype=torch.int64).to(torch.uint8)
    mean, std = channel_stats(images)
    x = images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3), ddof=1), atol=1e-6)
    assert len(mean) == 3 and all(isinstance(v, float) for v in (*mean, *std))


def test_loaded_stats_are_the_training_images_stats(fake_fmnist: Path) -> None:
    ds = load_fashion_mnist(data_dir=fake_fmnist, download=False)
    x = ds.train_images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(ds.mean, [x.mean()], atol=1e-6)
    np.testing.assert_allclose(ds.std, [x.std(ddof=1)], atol=1e-6)


# --------------------------------------------------------------------------- the real files


@pytest.mark.real_data
def test_real_fashion_mnist_from_the_debian_package(real_fmnist: Path) -> None:
    before = tree_digest(real_fmnist)
    ds = load_fashion_mnist(download=False)
    check_dataset(ds, n_train=60_000, n_test=10_000)
    assert "Debian" in ds.source
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert 0.25 < ds.mean[0] < 0.33 and 0.3 < ds.std[0] < 0.4  # the well-known ~0.286 / ~0.353
    assert tree_digest(real_fmnist) == before


@pytest.mark.parametrize("spec", [fm.FASHION_MNIST, fm.MNIST_SPEC])
def test_idx_files_read_as_torchvision_reads_them(spec: fm.IdxSpec, tmp_path: Path, fake_fmnist: Path) -> None:
    """The IDX reader (torchvision is not imported to read) gives torchvision's tensors and class names."""
    import torchvision.datasets

    root, origin = fm.locate_idx(spec, fake_fmnist, tmp_path / "cache", download=False)
    ours = fm._read(root, origin, spec)
    reader = getattr(torchvision.datasets, spec.folder)
    train, test = reader(str(root), train=True), reader(str(root), train=False)
    for a, b in zip(ours[:4], (train.data, train.targets, test.data, test.targets), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert ours[4] == tuple(train.classes)


# --------------------------------------------------------------------------- image modes


def _write_in_every_mode(folder: Path) -> dict[str, tuple[Path, float]]:
    """One file per PIL mode PIL can write (PNG, else TIFF, else JPEG) and the mean brightness it should decode to,
    in 8-bit levels, from the RGB source (16-bit files: their own values / 257)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8))
    files = {}
    for mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "RGBX", "RGBa", "La"):
        try:
            img = rgb.convert(mode)
        except ValueError:
            img = rgb.convert("RGBA").convert(mode)
        for suffix in (".png", ".tif", ".jpg"):
            try:
                img.save(folder / f"{mode}{suffix}")
            except (OSError, ValueError, KeyError):
                (folder / f"{mode}{suffix}").unlink(missing_ok=True)
                continue
            files[mode] = (folder / f"{mode}{suffix}", float(np.asarray(rgb.convert("L"), dtype=np.float64).mean()))
            break
    wide = (np.arange(12 * 16).reshape(12, 16) * 341).astype(np.uint16)  # 0 .. 65131: most of the 16-bit range
    for suffix in (".png", ".tif"):
        Image.fromarray(wide).save(folder / f"I;16{suffix}")
        files[f"I;16{suffix}"] = (folder / f"I;16{suffix}", float((wide / 257.0).mean()))
    (folder / "I;16.pgm").write_bytes(b"P5\n16 12\n65535\n" + wide.astype(">u2").tobytes())
    files["I;16.pgm"] = (folder / "I;16.pgm", float((wide / 257.0).mean()))
    return files


def test_every_image_mode_is_decoded_faithfully_or_refused_in_one_line(tmp_path: Path) -> None:
    """A 16-bit grayscale PNG was all white (PIL's conversion clips at 255), in training and in predict alike: the
    one decoder scales 16-bit images, converts every other mode PIL writes, and refuses 32-bit pixels in one line."""
    from PIL import Image

    from reffakd.data import load_imagefolder
    from reffakd.data.dataset import read_image_as_trained
    from reffakd.data.images import decode_image

    files = _write_in_every_mode(tmp_path)
    assert {"1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "LA", "I;16.png", "I;16.pgm"} <= set(files)
    for mode, (path, mean) in files.items():
        for channels in (1, 3):
            x = decode_image(path, channels, (12, 16))
            assert x.shape == (channels, 12, 16) and x.dtype == torch.uint8
            tolerance = 40 if mode == "1" else 8  # 1-bit: dithered
            assert abs(float(x.double().mean()) - mean) < tolerance, (mode, channels, float(x.double().mean()), mean)
            assert torch.equal(read_image_as_trained(path, channels, (12, 16), None), x)  # predict's reading
    wide = np.asarray(Image.open(files["I;16.png"][0]), dtype=np.float64)
    got = decode_image(files["I;16.png"][0], 1, (12, 16))[0].numpy()
    assert np.abs(got - wide / 257.0).max() <= 0.5  # each pixel to the nearest 8-bit level
    # Training reads the same pixels: a class of 16-bit PNGs is not all white.
    for c in ("a", "b"):
        (tmp_path / "tree" / c).mkdir(parents=True)
        for i in range(3):
            shutil.copy(files["I;16.png"][0], tmp_path / "tree" / c / f"{i}.png")
    ds = load_imagefolder(data_dir=tmp_path / "tree", test_fraction=0.34, streaming=False, download=False)
    size = tuple(ds.train_images.shape[2:])
    assert ds.train_images.shape[1] == 1 and torch.equal(
        ds.train_images[0], decode_image(files["I;16.png"][0], 1, size)
    )
    assert 100 < float(ds.train_images.double().mean()) < 150  # was 255: all white
    # 32-bit pixels have no fixed range: one line naming the file and what is allowed.
    Image.fromarray(np.zeros((4, 4), np.int32) + 70000).save(tmp_path / "int32.tif")
    Image.fromarray(np.zeros((4, 4), np.float32) + 0.5).save(tmp_path / "float.tif")
    for name in ("int32.tif", "float.tif"):
        with pytest.raises(ReffAKDError, match=r"32-bit .* allowed: 1-, 8- or 16-bit") as info:
            decode_image(tmp_path / name, 1, (4, 4))
        assert name in str(info.value) and "\n" not in str(info.value)
