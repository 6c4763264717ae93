"""Train a small CNN on CPU from a .bale file through TorchIterableDataset and a DataLoader.

Run with ``.venv/bin/python examples/train_torch.py`` (needs ``pip install torch`` and
scikit-image). It
1. cuts 64x64 crops out of the real photographs bundled with scikit-image (nothing is
   downloaded); the label of a crop is the photo it comes from;
2. writes them to train.bale and valid.bale;
3. trains a small CNN for a few hundred steps with batches from ``bale.Loader`` made in two
   DataLoader worker processes, printing the loss as it falls, the throughput, and the
   accuracy on the held-out crops.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from photo_splits import PHOTOS, write_splits
from torch import nn
from torch.utils.data import DataLoader

import bale
from bale.adapters.torch import TorchIterableDataset

BATCH_SIZE = 64
EPOCHS = 4


def small_cnn(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.AvgPool2d(2),  # look at 32x32: a few hundred steps fit in seconds on a laptop CPU
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> contiguous float (N, C, H, W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).contiguous().float().div_(127.5).sub_(1.0)


def main() -> int:
    torch.manual_seed(0)
    # Leave a core to the two DataLoader workers: oversubscribed cores make torch's
    # compute threads spin instead of working.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
    with tempfile.TemporaryDirectory(prefix="bale-torch-") as tmp:
        t0 = time.perf_counter()
        paths = write_splits(Path(tmp))
        print(f"wrote {', '.join(str(bale.open(p)) for p in paths.values())}")
        print(f"  ({time.perf_counter() - t0:.1f} s to cut the crops and write the files)")

        train = TorchIterableDataset(paths["train"], BATCH_SIZE, shuffle="chunks", seed=0)
        loader = DataLoader(train, batch_size=None, num_workers=2)
        model = small_cnn(len(PHOTOS))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = nn.CrossEntropyLoss()

        step, images_seen, waited, running = 0, 0, 0.0, []
        t0 = time.perf_counter()
        for epoch in range(EPOCHS):
            train.set_epoch(epoch)  # a new order every epoch, as with DistributedSampler
            asked = time.perf_counter()
            for seen, batch in enumerate(loader, start=1):
                waited += time.perf_counter() - asked  # time the model waited for data
                loss = loss_fn(model(as_input(batch["image"])), batch["label"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                images_seen += len(batch["label"])
                running.append(loss.item())
                if step % 50 == 0:
                    rate = images_seen / (time.perf_counter() - t0)
                    print(
                        f"epoch {epoch} step {step:4d}  loss {np.mean(running):.3f}  "
                        f"{rate:6.0f} images/s"
                    )
                    running.clear()
                    checkpoint = train.state_dict(seen, num_workers=2)  # what to save to resume
                asked = time.perf_counter()
        took = time.perf_counter() - t0
        print(
            f"trained {step} steps ({images_seen} images) in {took:.1f} s: "
            f"{images_seen / took:.0f} images/s including the model; waiting for data "
            f"{waited:.1f} s ({waited / took:.0%}: mostly each epoch's start, where the workers"
            " are forked and read their first shuffle window)"
        )
        print(f"state to resume from the last report: {checkpoint}")

        model.eval()
        valid = TorchIterableDataset(paths["valid"], 256, shuffle="none")
        correct = total = 0
        with torch.no_grad():
            for batch in DataLoader(valid, batch_size=None, num_workers=0):
                predicted = model(as_input(batch["image"])).argmax(dim=1)
                correct += int((predicted == batch["label"]).sum())
                total += len(batch["label"])
        print(f"held-out accuracy: {correct / total:.1%} on {total} crops (chance: 16.7%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
