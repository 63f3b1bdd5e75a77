"""Print the Markdown tables of docs/MODELS.md: size and cost of every registered classifier.

Parameters and MACs per image (one MAC = 2 FLOPs of PyTorch's FlopCounterMode, convolutions and matmuls
only) at 100 classes on 3x32x32 inputs, then at 10 classes on 1x32x32 for the Fashion-MNIST-sized models.
Counts do not depend on the weights or the machine.

    python benchmarks/model_table.py
"""

from __future__ import annotations

import argparse

import torch

from reffakd import ReffAKDError
from reffakd.models import MODELS, create_model
from reffakd.resources import forward_flops, parameter_count

GRAYSCALE_10 = ("lenet5", "resnet8", "resnet14", "resnet20")
# Rows by family (the file under src/reffakd/models/), then in registration order; unknown files go last.
FAMILIES = ("lenet", "resnet_cifar", "resnet", "wrn", "vgg", "mobilenetv2", "shufflenet")


def family(name: str) -> str:
    return MODELS[name].__module__.rsplit(".", 1)[-1]


def ordered_models() -> list[str]:
    names = list(MODELS)  # registration order
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(names, key=lambda n: (rank.get(family(n), len(FAMILIES)), names.index(n)))


def smallest_side(name: str) -> int:
    """The smallest square input the builder accepts (each one refuses smaller ones with a ReffAKDError)."""
    side = 1
    while True:
        try:
            create_model(name, num_classes=10, in_channels=1, image_size=(side, side))
            return side
        except ReffAKDError:
            side += 1


def row(name: str, num_classes: int, in_channels: int) -> tuple[int, int]:
    model = create_model(name, num_classes=num_classes, in_channels=in_channels, image_size=(32, 32))
    return parameter_count(model), forward_flops(model, (in_channels, 32, 32)) // 2


def fmt_params(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f} M)"


def fmt_macs(n: int) -> str:
    return f"{n:,} ({n / 1e6:,.1f} M)"


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    torch.set_num_threads(1)
    print("| model | file | parameters | MACs per image | smallest input |")
    print("|---|---|---:|---:|---:|")
    for name in ordered_models():
        params, macs = row(name, 100, 3)
        side = smallest_side(name)
        print(f"| `{name}` | `{family(name)}.py` | {fmt_params(params)} | {fmt_macs(macs)} | {side}x{side} |")
    print()
    print("| model (10 classes, 1x32x32) | parameters | MACs per image |")
    print("|---|---:|---:|")
    for name in GRAYSCALE_10:
        params, macs = row(name, 10, 1)
        print(f"| `{name}` | {fmt_params(params)} | {fmt_macs(macs)} |")


if __name__ == "__main__":
    main()
