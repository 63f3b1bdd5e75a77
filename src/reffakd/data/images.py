"""Image files on disk: header probes, decoding to uint8 tensors, and the lazy ``ImageFiles``.

One decoder serves the in-memory load and the streaming loader, so both give the same pixels.
Decoding runs in a torch ``DataLoader``'s worker processes, a whole batch of files per call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import ReffAKDError

# torchvision's ImageFolder extensions; files with other names (notes, Thumbs.db) are skipped.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"})
MEMORY_FRACTION = 0.4  # the split copies the training images once, so peak use is about twice this


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


def probe_image(path: str | os.PathLike[str]) -> tuple[tuple[int, int], bool]:
    """((height, width), is_grayscale) from the header alone; one clear error for a non-image."""
    try:
        with Image.open(path) as img:
            return (img.height, img.width), img.mode in GRAY_MODES
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
        raise ReffAKDError(
            f"unreadable image {path}: {_reason(exc)}; expected an image file PIL can open (PNG, JPEG, ...)"
        ) from None


def probe_images(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[tuple[int, int], bool]]:
    """``probe_image`` over many files; threads hide file-system latency (headers are tiny)."""
    if len(paths) < 256:
        return [probe_image(p) for p in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(probe_image, paths, chunksize=64))


# 16-bit grayscale (PNG, TIFF, PGM): scaled to 8 bits; PIL's own conversion clips at 255, so a 16-bit image became
# all white. Mode I (32-bit integers) is 16-bit when the format holds no more (PNG, PGM); otherwise, like F (32-bit
# floats), it has no fixed brightness range and is refused.
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "PPM"})


def to_mode(img: Image.Image, channels: int, path: str | os.PathLike[str]) -> Image.Image:
    """``img`` as 8-bit L (1 channel) or RGB (3), every brightness kept in proportion; one line for a mode that
    cannot be converted faithfully."""
    target = "L" if channels == 1 else "RGB"
    if img.mode in SIXTEEN_BIT_MODES or (img.mode == "I" and img.format in SIXTEEN_BIT_FORMATS):
        wide = np.asarray(img).astype(np.float64)
        if wide.min() < 0 or wide.max() > 65535:  # a 32-bit mode I outside the 16-bit range it was read as
            raise ReffAKDError(
                f"image {path} has 32-bit pixel values ({wide.min():.0f} to {wide.max():.0f}); allowed: 8- or 16-bit"
            )
        return Image.fromarray(np.rint(wide / 257.0).astype(np.uint8), "L").convert(target)
    if img.mode in ("I", "F"):
        kind = "32-bit integer" if img.mode == "I" else "32-bit float"
        raise ReffAKDError(
            f"image {path} has PIL mode {img.mode} ({kind} pixels), which has no fixed brightness range; allowed: "
            "1-, 8- or 16-bit images (save it as an 8- or 16-bit PNG)"
        )
    try:
        return img.convert(target)
    except ValueError:  # PIL converts some modes (LAB) to RGB but not to L
        return img.convert("RGB").convert(target)


def decode_image(path: str | os.PathLike[str], channels: int, size: tuple[int, int]) -> torch.Tensor:
    """One file -> uint8 (channels, H, W): converted to L or RGB (``to_mode``), bilinear-resized (antialiased) if
    needed."""
    h, w = size
    try:
        with Image.open(path) as img:
            img = to_mode(img, channels, path)
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except ReffAKDError:
        raise
    except Exception as exc:  # truncated data only shows when the pixels are decoded
        raise ReffAKDError(
            f"unreadable image {path}: {_reason(exc)}; expected an image file PIL can decode (PNG, JPEG, ...)"
        ) from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.array(arr, order="C"))  # a writable copy: PIL's buffer is read-only


class ImageFiles:
    """Images left on disk, decoded on demand to ``channels`` x ``size``: the streamed form of a dataset.

    Looks enough like a uint8 (N, C, H, W) tensor for the code that only reads ``shape`` or picks
    rows: ``shape``, ``len``, indexing by a tensor/array/list/slice of positions (a new
    ``ImageFiles``), and an int index (one decoded image). Paths are kept as one numpy byte array
    relative to ``root``: a list of Python strings would be copied page by page into every
    DataLoader worker as reference counts change.
    """

    def __init__(
        self, root: str | os.PathLike[str], names: Sequence[str] | np.ndarray, channels: int, size: tuple[int, int]
    ) -> None:
        self.root = Path(root)
        if isinstance(names, np.ndarray) and names.dtype.kind == "S":
            self.names = names
        else:
            self.names = (
                np.array([os.fsencode(n) for n in names], dtype=np.bytes_) if len(names) else np.empty(0, dtype="S1")
            )
        self.channels = int(channels)
        self.size = (int(size[0]), int(size[1]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.names), self.channels, *self.size)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded uint8 tensor would take."""
        n, c, h, w = self.shape
        return n * c * h * w

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.names[i])

    def decode(self, i: int) -> torch.Tensor:
        return decode_image(self.path(i), self.channels, self.size)

    def __getitem__(self, index: int | slice | torch.Tensor | np.ndarray | Sequence[int]) -> ImageFiles | torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self.decode(int(index))
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        return ImageFiles(self.root, self.names[index], self.channels, self.size)

    def to_tensor(self, num_workers: int | None = None) -> torch.Tensor:
        """Decode every file into one uint8 (N, C, H, W) tensor (worker processes for large lists)."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        lo = 0
        if num_workers is None:
            num_workers = default_num_workers() if len(self) >= 2048 else 0
        chunks = [torch.arange(i, min(i + 256, len(self))) for i in range(0, len(self), 256)]
        for batch in decode_batches(self, chunks, num_workers):
            out[lo : lo + len(batch)] = batch
            lo += len(batch)
        return out

    def __repr__(self) -> str:
        n, c, h, w = self.shape
        return f"ImageFiles({n} files under {self.root}, decoded to {c}x{h}x{w})"


def materialize(images: torch.Tensor | ImageFiles) -> torch.Tensor:
    """The uint8 (N, C, H, W) tensor of an in-memory or on-disk image set (e.g. a few images to plot)."""
    return images if isinstance(images, torch.Tensor) else images.to_tensor()


class _BatchDecoder(Dataset):
    """One call decodes a whole batch (index = tensor of positions), so workers exchange one tensor per batch.

    A decoding error comes back as its one-line message: raised inside a worker, it would reach
    the user wrapped in a multi-line DataLoader traceback.
    """

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor | str:
        out = torch.empty((len(index), *self.files.shape[1:]), dtype=torch.uint8)
        try:
            for j, i in enumerate(index.tolist()):
                out[j] = self.files.decode(i)
        except ReffAKDError as exc:
            return str(exc)
        return out


def decode_batches(
    files: ImageFiles, batches: Iterable[torch.Tensor], num_workers: int, pin_memory: bool = False
) -> Iterator[torch.Tensor]:
    """Yield uint8 batches of ``files`` at the given positions, in order, decoded by ``num_workers`` processes."""
    batches = list(batches)
    loader = DataLoader(
        _BatchDecoder(files),
        batch_size=None,
        sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        # A private generator: the loader draws a base seed per epoch, which must not move the global RNG.
        generator=torch.Generator().manual_seed(0),
    )
    for item in loader:
        if isinstance(item, str):
            raise ReffAKDError(item)
        yield item


def default_num_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def available_memory_bytes() -> int | None:
    """RAM that can be used now: MemAvailable, capped by a cgroup v2 limit; None if unknown."""
    available: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, available)


def fits_in_memory(num_images: int, channels: int, h: int, w: int, budget_bytes: int | None = None) -> bool:
    """Whether uint8 tensors of that many images fit in ``budget_bytes`` (default: 40% of available RAM)."""
    if budget_bytes is None:
        available = available_memory_bytes()
        if available is None:
            return True
        budget_bytes = int(available * MEMORY_FRACTION)
    return num_images * channels * h * w <= budget_bytes
