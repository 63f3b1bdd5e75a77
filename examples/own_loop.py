"""Your own model and training loop, with ReffAKD's soft labels: about 30 lines (docs/API.md walks through it).

python examples/own_loop.py                      # real Fashion-MNIST (or its download), 2 epochs
python examples/own_loop.py --data-dir DIR --epochs 5
"""

import argparse

import torch
import torch.nn as nn

import reffakd

ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default=None)
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--autoencoder-epochs", type=int, default=reffakd.default_config().autoencoder.epochs)
args = ap.parse_args()

splits = reffakd.load_splits(reffakd.DataConfig("fashion-mnist", data_dir=args.data_dir))  # uint8 images, labels
config = reffakd.default_config("fashion-mnist", autoencoder_epochs=args.autoencoder_epochs)
soft = reffakd.make_soft_labels(splits, config=config)  # one (10, 10) table, no folder kept
criterion = reffakd.ReffAKDLoss(soft, alpha=0.5, temperature=4.0)

model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 256), nn.ReLU(), nn.Linear(256, 10))  # your own nn.Module
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
mean, std = splits.mean[0], splits.std[0]
images, labels = splits.train.images.float().div(255).sub(mean).div(std), splits.train.labels
for epoch in range(args.epochs):
    for idx in torch.randperm(len(labels)).split(128):
        loss = criterion(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    val = splits.val.images.float().div(255).sub(mean).div(std)
    with torch.no_grad():
        accuracy = (model(val).argmax(1) == splits.val.labels).float().mean().item()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}, validation top-1 {100 * accuracy:.2f} %")
