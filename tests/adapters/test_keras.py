"""bale.adapters.keras: PyDataset batches for model.fit, on Keras 3's torch backend."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
import bale.adapters.keras as keras_adapter
from bale.adapters.keras import EpochBatches, keras_generator, keras_sequence_class
from bale.errors import SchemaError

ROWS = 300
BATCH = 32


@pytest.fixture(scope="module")
def keras() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        if "keras" not in sys.modules:
            patch.setenv("KERAS_BACKEND", "torch")
        pytest.importorskip("torch")
        module = pytest.importorskip("keras")
        if module.backend.backend() != "torch":
            pytest.skip("keras was imported with another backend")
        yield module


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    target = tmp_path_factory.mktemp("keras") / "rows.bale"
    bale.write(
        target,
        {
            "x": rng.standard_normal((ROWS, 8)).astype(np.float32),
            "label": (np.arange(ROWS) % 3).astype(np.int64),
            "id": np.arange(ROWS, dtype=np.int64),
        },
        row_group_rows=25,
    )
    return target


def tiny_model(keras: Any) -> Any:
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def test_importing_bale_and_adapters_imports_no_framework() -> None:
    code = (
        "import sys, bale, bale.dask, bale.adapters, bale.adapters.grain, bale.adapters.keras; "
        "print(sorted(m for m in ('dask', 'torch', 'keras', 'grain') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_keras_gives_install_hint(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keras_sequence_class.cache_clear()
    monkeypatch.setitem(sys.modules, "keras", None)
    try:
        with pytest.raises(ImportError, match=r"pip install 'keras>=3'"):
            keras_adapter.KerasSequence(path, BATCH, x="x", y="label")
    finally:
        keras_sequence_class.cache_clear()


def test_keras_sequence_is_a_class(keras: Any, path: Path) -> None:
    # issue 15 item 11: KerasSequence was a factory function, so isinstance raised TypeError.
    from bale.adapters.keras import KerasSequence

    assert isinstance(KerasSequence, type)
    sequence = KerasSequence(path, BATCH, x="x", y="label")
    assert isinstance(sequence, KerasSequence)
    assert isinstance(sequence, keras.utils.PyDataset) and isinstance(sequence, EpochBatches)
    assert not isinstance(EpochBatches(path, BATCH, x="x"), KerasSequence)
    assert issubclass(KerasSequence, keras.utils.PyDataset)
    assert KerasSequence is keras_sequence_class() and KerasSequence.__name__ == "KerasSequence"


@pytest.fixture(scope="module")
def jpeg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import io

    from PIL import Image

    def jpeg(i: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (12, 10), (i * 20, 0, 0)).save(out, format="JPEG")
        return out.getvalue()

    target = tmp_path_factory.mktemp("keras_jpeg") / "photos.bale"
    bale.write(target, {"image": [jpeg(i) for i in range(8)], "label": np.arange(8) % 2})
    return target


def test_image_bytes_without_decoding_are_refused(keras: Any, jpeg_path: Path) -> None:
    # issue 15 item 11: a JPEG column reached Keras as a list of bytes.
    from bale.adapters.keras import KerasSequence

    with pytest.raises(SchemaError) as caught:
        KerasSequence(jpeg_path, 4, x="image", y="label")
    message = str(caught.value)
    assert "photos.bale" in message and "column 'image'" in message
    assert "Keras needs arrays" in message
    assert "batch_transform=bale.images.DecodeImages('image'" in message
    # With the decoding transform the same column gives uint8 image arrays.
    decode = bale.images.DecodeImages("image", size=(10, 12))
    x, y = KerasSequence(jpeg_path, 4, x="image", y="label", batch_transform=decode)[0]
    assert x.shape == (4, 10, 12, 3) and x.dtype == np.uint8 and y.shape == (4,)
    # A transform that leaves the bytes is caught at the batch, and so is keras_generator.
    untouched = KerasSequence(jpeg_path, 4, x="image", y="label", batch_transform=dict)
    with pytest.raises(
        SchemaError, match=r"column 'image': is a list of bytes values in the batch"
    ):
        untouched[0]
    with pytest.raises(
        SchemaError, match=r"column 'image': is a list of bytes values in the batch"
    ):
        next(keras_generator(jpeg_path, 4, "image", "label"))


@pytest.mark.parametrize("window_groups", [None, 2])
def test_epoch_batches_follow_the_loader_order(path: Path, window_groups: int | None) -> None:
    batches = EpochBatches(
        path, BATCH, x="x", y="id", shuffle="chunks", seed=4, window_groups=window_groups
    )
    with bale.Loader(
        path, BATCH, seed=4, columns=["x", "id"], rank=0, world_size=1, window_groups=window_groups
    ) as loader:
        for epoch in range(2):
            batches.set_epoch(epoch)
            loader.set_epoch(epoch)
            want = list(loader)
            assert len(batches) == len(want)
            for i, reference in enumerate(want):
                x, ids = batches[i]
                np.testing.assert_array_equal(ids, reference["id"])
                np.testing.assert_array_equal(x, reference["x"])
                np.testing.assert_array_equal(batches.batch_rows(i), reference["id"])
    with pytest.raises(IndexError):
        batches[len(batches)]


def test_epoch_batches_inputs_and_options(path: Path) -> None:
    multi = EpochBatches(path, 50, x=["x", "id"], y=None, shuffle=False, drop_last=True)
    assert len(multi) == ROWS // 50
    (inputs,) = multi[1]
    assert inputs.keys() == {"x", "id"} and inputs["id"].tolist() == list(range(50, 100))
    doubled = EpochBatches(path, 10, x="x", y="label", shuffle="none", batch_transform=_double_x)
    np.testing.assert_allclose(doubled[0][0], 2 * bale.open(path)["x"][:10])
    with pytest.raises(KeyError):
        EpochBatches(path, 10, x="nope")


def _double_x(batch: dict[str, Any]) -> dict[str, Any]:
    return {**batch, "x": batch["x"] * 2}


def test_fit_sees_every_row_once_per_epoch(keras: Any, path: Path) -> None:
    seen: dict[int, list[int]] = {}
    labels = bale.open(path)["label"][:]

    class Recording(keras_sequence_class()):  # type: ignore[misc]
        def __getitem__(self, index: int) -> tuple[Any, ...]:
            x, y = super().__getitem__(index)
            rows = self.batch_rows(index)
            np.testing.assert_array_equal(y, labels[rows])
            seen.setdefault(self.epoch, []).extend(rows.tolist())
            return x, y

    sequence = Recording(path, BATCH, x="x", y="label", shuffle="chunks", seed=0)
    assert isinstance(sequence, keras.utils.PyDataset)
    history = tiny_model(keras).fit(sequence, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
    # fit peeks at batch 0 to build the model, then calls on_epoch_end before epoch 1.
    assert sorted(seen) == [0, 1, 2]
    peek = EpochBatches(path, BATCH, x="x", y="label", shuffle="chunks", seed=0).batch_rows(0)
    assert seen[0] == peek.tolist()
    for epoch in (1, 2):
        assert sorted(seen[epoch]) == list(range(ROWS))  # every row once per epoch
    assert seen[1] != seen[2]  # each epoch its own order
    assert sequence.epoch == 3


def test_fit_with_keras_shuffle_and_threads(keras: Any, path: Path) -> None:
    sequence = keras_adapter.KerasSequence(path, BATCH, x="x", y="label", seed=1, workers=2)
    history = tiny_model(keras).fit(sequence, epochs=1, verbose=0)
    assert np.isfinite(float(history.history["loss"][0]))
    assert sequence.epoch == 2  # fit's start, then the end of its one epoch


def test_keras_generator(keras: Any, path: Path) -> None:
    one_epoch = list(keras_generator(path, BATCH, "x", "id", epochs=1, seed=2))
    ids = np.concatenate([y for _, y in one_epoch])
    assert sorted(ids.tolist()) == list(range(ROWS))
    assert all(x.shape[1:] == (8,) for x, _ in one_epoch)

    steps = len(one_epoch)
    data = keras_generator(path, BATCH, "x", "label", seed=2)
    model = tiny_model(keras)
    history = model.fit(data, epochs=2, steps_per_epoch=steps, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
