"""CIFAR-10 and CIFAR-100 from the official python archive, read in place or from the cache, never modified.

Sources, in order: ``data_dir`` (holding ``cifar-10-batches-py/`` / ``cifar-100-python/``, being
that folder, or holding / being the ``.tar.gz``); an earlier download in the cache; torchvision's
download into the cache. An archive is extracted member by member into the cache, never next to it.

The batches are Python pickles: the format requires unpickling. torchvision's reader would
``pickle.load`` them, which runs whatever code a doctored file names, and would refuse any file
whose md5 differs from the release. So they are read here with an unpickler that only rebuilds
numpy arrays, lists, dicts and strings (anything else is refused), and the md5 against
torchvision's table is reported in ``source`` rather than required.
"""

from __future__ import annotations

import _codecs
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ReffAKDError
from ..io import current_umask
from .augment import BatchAugment
from .cache import default_cache_dir, given_folder
from .dataset import ImageDataset, channel_stats, resize_uint8

# The paper's augmentation for CIFAR: random crop with 4-pixel padding, horizontal flip, rotation up to 15 degrees.
CIFAR_AUGMENT = BatchAugment(pad=4, flip=True, rotation=15.0)


@dataclass(frozen=True)
class CifarSpec:
    """One CIFAR variant: its name, torchvision's class (file names, md5 table, URL) and its label keys."""

    name: str
    title: str
    reader_name: str  # torchvision.datasets' class, which holds the release's file names, md5 table and URL
    label_key: str
    num_classes: int

    @property
    def reader(self) -> Any:
        """torchvision's class, imported when first needed (its import takes seconds)."""
        import torchvision.datasets

        return getattr(torchvision.datasets, self.reader_name)

    @property
    def files(self) -> dict[str, str]:
        """File name -> official md5, meta file included."""
        r = self.reader
        return {**{f: md5 for f, md5 in (*r.train_list, *r.test_list)}, r.meta["filename"]: r.meta["md5"]}


CIFAR10_SPEC = CifarSpec("cifar10", "CIFAR-10", "CIFAR10", "labels", 10)
CIFAR100_SPEC = CifarSpec("cifar100", "CIFAR-100", "CIFAR100", "fine_labels", 100)


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays (plus builtin containers and strings); any other global is refused.

    The allow-list is what the official batches (pickled by Python 2 numpy) and Python 3 re-pickles
    of them name: the array constructor under its numpy 1 and 2 module names, ``ndarray``, ``dtype``
    and ``_codecs.encode`` (how protocol 2 stores bytes under Python 3; it only converts text).
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in a CIFAR batch"
            )
        return self.ALLOWED[(module, name)]()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0] or type(exc).__name__


def _unpickle(path: Path, title: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... on damaged or doctored files
        raise ReffAKDError(
            f"corrupt {title} file {path}: {_first_line(exc)}; expected a batch of the official python archive"
        ) from None
    if not isinstance(obj, dict):
        raise ReffAKDError(
            f"corrupt {title} file {path}: holds a {type(obj).__name__}, "
            "expected the dict of a batch of the official python archive"
        )
    return obj


def _batch(path: Path, spec: CifarSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> (uint8 (N, 3, 32, 32), int64 (N,)); the rows are already channel-planar."""
    entry = _unpickle(path, spec.title)
    data, labels = entry.get("data"), entry.get(spec.label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or data.shape[0] == 0
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ReffAKDError(
            f"corrupt {spec.title} file {path}: 'data' is {got}; expected uint8 rows of 3072 values (3x32x32)"
        )
    try:
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    except (TypeError, ValueError):
        y = torch.empty(0)
    if y.ndim != 1 or y.shape[0] != data.shape[0]:
        raise ReffAKDError(
            f"corrupt {spec.title} file {path}: {spec.label_key!r} does not hold one integer label "
            f"for each of the {data.shape[0]} images"
        )
    if int(y.min()) < 0 or int(y.max()) >= spec.num_classes:
        raise ReffAKDError(f"corrupt {spec.title} file {path}: labels outside 0..{spec.num_classes - 1}")
    return torch.from_numpy(data.copy()).view(-1, 3, 32, 32), y


def _class_names(path: Path, spec: CifarSpec) -> tuple[str, ...]:
    key = spec.reader.meta["key"]
    names = _unpickle(path, spec.title).get(key)
    if not isinstance(names, list) or len(names) != spec.num_classes or not all(isinstance(n, str) for n in names):
        raise ReffAKDError(f"corrupt {spec.title} file {path}: {key!r} is not a list of {spec.num_classes} class names")
    return tuple(names)


def _complete(folder: Path, spec: CifarSpec) -> bool:
    return all((folder / f).is_file() for f in spec.files)


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(archive: Path, cache_dir: Path, spec: CifarSpec) -> Path:
    """Extract the batch files (and only them) into the cache; return the folder holding them.

    Member by member, by exact name, so an archive cannot write anywhere else; into a temporary
    folder renamed at the end, so an interrupted or failed extraction leaves nothing to reuse.
    """
    st = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    final = cache_dir / spec.name / key
    if _complete(final / spec.reader.base_folder, spec):
        return final / spec.reader.base_folder
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would make the shared cache private
        (tmp / spec.reader.base_folder).mkdir()
        with tarfile.open(archive, "r:gz") as tar:
            for name in spec.files:
                member = f"{spec.reader.base_folder}/{name}"
                try:
                    info = tar.getmember(member)
                except KeyError:
                    raise ReffAKDError(
                        f"{spec.title} archive {archive} has no {member}; expected the official {spec.reader.filename}"
                    ) from None
                src = tar.extractfile(info) if info.isfile() else None
                if src is None:
                    raise ReffAKDError(f"{spec.title} archive {archive}: {member} is not a regular file")
                with src, open(tmp / member, "wb") as out:
                    shutil.copyfileobj(src, out)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ReffAKDError(
            f"corrupt {spec.title} archive {archive}: {_first_line(exc)}; expected the official {spec.reader.filename}"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final / spec.reader.base_folder


def locate_cifar(
    spec: CifarSpec, data_dir: str | os.PathLike[str] | None, cache_dir: Path, download: bool = True
) -> tuple[Path, str]:
    """Return (folder holding the batch files, description of the source) or one error naming every place tried."""
    base, archive_name = spec.reader.base_folder, spec.reader.filename
    tried: list[str] = []
    if data_dir is not None:
        d = given_folder(data_dir, "data_dir", file_ok=True)  # a folder, or the .tar.gz archive itself
        for folder in (d / base, d):
            if _complete(folder, spec):
                return folder, f"--data-dir {data_dir}"
        for archive in (d / archive_name, d):
            if archive.is_file():
                return _extract(
                    archive, cache_dir, spec
                ), f"--data-dir {data_dir} ({archive.name}, extracted into the cache)"
        raise ReffAKDError(  # an explicit path is the only place looked at: never a fallback to a download
            f"data_dir {data_dir} holds no {spec.name} files: no {base}/ with {', '.join(spec.files)}, "
            f"and no {archive_name}",
            params=("data_dir",),
        )
    else:
        tried.append("data_dir (not given)")
    download_root = cache_dir / spec.name / "download"
    archive = download_root / archive_name
    if archive.is_file():
        return _extract(archive, cache_dir, spec), f"earlier download ({archive})"
    if download:
        from torchvision.datasets.utils import download_url

        try:
            download_url(spec.reader.url, str(download_root), archive_name, spec.reader.tgz_md5)
            return _extract(archive, cache_dir, spec), f"torchvision download ({archive})"
        except ReffAKDError:
            raise
        except Exception as exc:  # network errors come in many types
            tried.append(f"torchvision download into {download_root} ({type(exc).__name__}: {_first_line(exc)[:80]})")
    else:
        tried.append(f"torchvision download into {download_root} (disabled)")
    raise ReffAKDError(f"{spec.title} not found; tried " + "; ".join(tried), params=("data_dir",))


def load_cifar(
    spec: CifarSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
    download: bool = True,
) -> ImageDataset:
    """CIFAR as uint8 tensors (resized once if ``image_size`` is not 32); mean/std of the training images."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder, origin = locate_cifar(spec, data_dir, cache, download)
    official = all(_md5(folder / f) == md5 for f, md5 in spec.files.items())
    origin += " (official files, md5 verified)" if official else " (md5 differs from the official release)"
    parts = {
        split: [_batch(folder / f, spec) for f, _ in files]
        for split, files in (("train", spec.reader.train_list), ("test", spec.reader.test_list))
    }
    classes = _class_names(folder / spec.reader.meta["filename"], spec)
    (train_x, train_y), (test_x, test_y) = (
        (torch.cat([b[0] for b in parts[s]]), torch.cat([b[1] for b in parts[s]])) for s in ("train", "test")
    )
    train_x, test_x = resize_uint8(train_x, (image_size, image_size)), resize_uint8(test_x, (image_size, image_size))
    mean, std = channel_stats(train_x)
    return ImageDataset(spec.name, train_x, train_y, test_x, test_y, classes, origin, mean, std, CIFAR_AUGMENT)


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
    download: bool = True,
) -> ImageDataset:
    """CIFAR-10: 50,000 + 10,000 3x32x32 images, 10 classes (names from ``batches.meta``)."""
    return load_cifar(CIFAR10_SPEC, data_dir, cache_dir=cache_dir, image_size=image_size, download=download)


def load_cifar100(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
    download: bool = True,
) -> ImageDataset:
    """CIFAR-100: 50,000 + 10,000 3x32x32 images, the 100 fine labels (names from ``meta``)."""
    return load_cifar(CIFAR100_SPEC, data_dir, cache_dir=cache_dir, image_size=image_size, download=download)
