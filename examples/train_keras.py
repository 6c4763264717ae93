"""Train a small CNN with Keras 3 (torch backend, CPU) from a .bale file through KerasSequence.

Run with ``.venv/bin/python examples/train_keras.py`` (needs ``pip install 'keras>=3' torch``
and scikit-image). It
1. cuts 64x64 crops out of the real photographs bundled with scikit-image (nothing is
   downloaded); the label of a crop is the photo it comes from;
2. writes them to train.bale and valid.bale;
3. runs ``model.fit`` on a ``KerasSequence`` (batch ``i`` of each epoch read by random access,
   shuffled chunk-aware by bale) for a few hundred steps, printing the loss as it falls and the
   throughput, then evaluates on the held-out crops.
"""

from __future__ import annotations

import os

# Keras reads its backend once, when it is first imported: choose it before any import of keras.
os.environ["KERAS_BACKEND"] = "torch"

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import torch
from photo_splits import PHOTOS, write_splits

import bale
from bale.adapters.keras import KerasSequence

BATCH_SIZE = 64
EPOCHS = 4


def small_cnn(classes: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((64, 64, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 127.5, offset=-1.0),
            keras.layers.AveragePooling2D(2),  # look at 32x32: a few hundred steps in seconds
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class Progress(keras.callbacks.Callback):  # type: ignore[misc]
    """Every ``every`` steps, prints the loss (Keras's mean over the epoch so far) and the
    images per second since training started."""

    def __init__(self, every: int = 50) -> None:
        super().__init__()
        self.every, self.step, self.started = every, 0, time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            rate = self.step * BATCH_SIZE / (time.perf_counter() - self.started)
            print(f"step {self.step:4d}  loss {float(logs['loss']):.3f}  {rate:6.0f} images/s")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        print(f"  end of epoch {epoch}: loss {logs['loss']:.3f}, accuracy {logs['accuracy']:.3f}")


def main() -> int:
    keras.utils.set_random_seed(0)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
    with tempfile.TemporaryDirectory(prefix="bale-keras-") as tmp:
        t0 = time.perf_counter()
        paths = write_splits(Path(tmp))
        print(f"wrote {', '.join(str(bale.open(p)) for p in paths.values())}")
        print(f"  ({time.perf_counter() - t0:.1f} s to cut the crops and write the files)")

        train = KerasSequence(
            paths["train"], BATCH_SIZE, x="image", y="label", shuffle="chunks", seed=0
        )
        model = small_cnn(len(PHOTOS))
        progress = Progress()
        t0 = time.perf_counter()
        # shuffle=False: the sequence already shuffles, chunk-aware, with a new order each epoch.
        model.fit(train, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[progress])
        took = time.perf_counter() - t0
        images = progress.step * BATCH_SIZE
        print(
            f"trained {progress.step} steps ({len(train)} per epoch, {images} images) in "
            f"{took:.1f} s: {images / took:.0f} images/s including the model"
        )

        valid = KerasSequence(paths["valid"], 256, x="image", y="label", shuffle=False)
        loss, accuracy = model.evaluate(valid, verbose=0)
        print(f"held-out accuracy: {accuracy:.1%} (loss {loss:.3f}; chance: 16.7%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
