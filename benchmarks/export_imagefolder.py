"""Export real Fashion-MNIST images as PNG files in class folders: a real ImageFolder tree to try
``reffakd run --dataset imagefolder`` on (docs/DATASETS.md records a run).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export_imagefolder.py --out /tmp/fmnist-folder --per-class 400

Images are read with the project's loader (``reffakd.data.load_fashion_mnist`` at the native 28x28,
from Debian's copy in /usr/share/datasets/fashion-mnist unless ``--data-dir`` says otherwise) and
written as 8-bit grayscale PNGs, ``<out>/<class>/<index>.png`` with the image's index in its split.
``--per-class`` images of each class come from a seeded shuffle of the training set. With
``--test-per-class N`` the tree becomes ``<out>/train/<class>/`` plus ``<out>/test/<class>/`` (from
the official test set); without it the loader carves its test set from the class folders.

Class folders are named after the dataset's classes, with two changes that exercise awkward names:
"T-shirt/top" has a slash, which no folder name can hold, and "Bag" gets a non-ASCII name.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from reffakd.data import load_fashion_mnist

FOLDER_NAMES = {"T-shirt/top": "T-shirt or top", "Bag": "Sac à main (bag)"}


def folder_name(class_name: str) -> str:
    name = FOLDER_NAMES.get(class_name, class_name)
    assert "/" not in name and name.strip() == name and name, name
    return name


def export(
    images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...], out: Path, per_class: int, seed: int
) -> int:
    """Write ``per_class`` images of every class (a seeded choice) under ``out/<class>/``; returns how many."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    written = 0
    for c, name in enumerate(class_names):
        picked = order[labels[order] == c][:per_class]
        if len(picked) < per_class:
            raise SystemExit(f"class {name!r} has only {len(picked)} images, fewer than --per-class {per_class}")
        folder = out / folder_name(name)
        folder.mkdir(parents=True)
        for i in sorted(picked.tolist()):
            Image.fromarray(images[i, 0].numpy()).save(folder / f"{i:05d}.png")
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="new folder to write the class folders into")
    p.add_argument(
        "--data-dir",
        default=None,
        help="Fashion-MNIST IDX files (default: Debian's copy, else the cache or a download)",
    )
    p.add_argument("--per-class", type=int, default=400, help="training images per class (default: 400)")
    p.add_argument(
        "--test-per-class",
        type=int,
        default=0,
        help="also write a test/ folder with this many official test images per class",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        print(f"export_imagefolder: {out} exists; choose a new --out", file=sys.stderr)
        return 1
    start = time.perf_counter()
    ds = load_fashion_mnist(args.data_dir, image_size=28)  # the native size: no resampling before the PNGs
    train_root = out / "train" if args.test_per_class else out
    n = export(ds.train_images, ds.train_labels, ds.class_names, train_root, args.per_class, args.seed)
    if args.test_per_class:
        n += export(ds.test_images, ds.test_labels, ds.class_names, out / "test", args.test_per_class, args.seed)
    print(f"{n} PNG files from {ds.source} in {time.perf_counter() - start:.1f} s under {out}:")
    for name in ds.class_names:
        print(f"  {name!r} -> {folder_name(name)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
