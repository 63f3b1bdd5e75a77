"""Shared fixtures: tiny Fashion-MNIST files in the real IDX format, and a private cache folder."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from reffakd.reports.plots import plots_enabled, plots_off, set_plots_enabled

# Tiny models on tiny batches: one intra-op thread is as fast, and on a shared 2-core machine a second one made
# LeNet steps up to 100x slower. Tests that need another setting set it themselves.
torch.set_num_threads(1)

# Fashion-MNIST's class names as torchvision and the dataset's documentation give them (what the loaders must return).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding torchvision reads: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_fake_fashion_mnist(
    folder: Path, n_train: int = 400, n_test: int = 100, seed: int = 0, compress: bool = True
) -> Path:
    """Class-structured 28x28 images (a bright band whose row depends on the class) so a model can learn them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, y in enumerate(labels):
            images[i, 2 * y + 4 : 2 * y + 8, 4:24] += 180
        for name, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            if compress:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
    return folder


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: to show that reading never modifies the source."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def deterministic_one_thread() -> Iterator[None]:
    """One torch thread and deterministic algorithms, restored afterwards: bit-identical resume comparisons."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


@contextlib.contextmanager
def drawing() -> Iterator[None]:
    """Figures on inside (the suite runs with them off: ``_no_plots``)."""
    before = plots_enabled()
    set_plots_enabled(True)
    try:
        yield
    finally:
        set_plots_enabled(before)


@pytest.fixture(autouse=True, scope="session")
def _no_plots() -> Iterator[None]:
    """No figures in the suite, as with ``--no-plots``: each PNG takes 0.1 to 0.3 s, and the suite drew about 270.
    The tests of what is drawn turn them on (``plots``, ``drawing``); subprocesses draw unless told not to."""
    with plots_off():
        yield


@pytest.fixture
def plots() -> Iterator[None]:
    """Figures drawn in this test."""
    with drawing():
        yield


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("REFFAKD_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def real_fmnist() -> Path:
    if not (REAL_FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return REAL_FMNIST
