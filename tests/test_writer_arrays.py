"""Writer.write takes what frameworks hand over: torch tensors and anything with __dlpack__ or
__array__ (issue 15, item 16), converted without a copy where DLPack allows one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.batches import as_numpy
from bale.errors import SchemaError

torch = pytest.importorskip("torch")


def read(path: Path, column: str) -> np.ndarray:
    with bale.open(path) as ds:
        values: np.ndarray = ds[column][:]
        return values


def test_torch_tensors_are_written(tmp_path: Path) -> None:
    features = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    labels = torch.arange(6) % 2
    bale.write(tmp_path / "t.bale", {"x": features, "y": labels})
    with bale.open(tmp_path / "t.bale") as ds:
        assert ds.schema["x"].type == bale.Array("float32", (4,))
        assert ds.schema["y"].type == bale.Array("int64", ())
    np.testing.assert_array_equal(read(tmp_path / "t.bale", "x"), features.numpy())
    np.testing.assert_array_equal(read(tmp_path / "t.bale", "y"), labels.numpy())


def test_non_contiguous_tensors_and_later_batches(tmp_path: Path) -> None:
    base = torch.arange(40, dtype=torch.float64).reshape(5, 8)
    strided = base.T[:, ::2]  # (8, 3) with neither C nor F order
    assert not strided.is_contiguous()
    with bale.Writer(tmp_path / "s.bale") as writer:
        writer.write({"x": strided})
        writer.write({"x": np.zeros((2, 3))})  # NumPy after torch in the same column
        writer.write({"x": torch.ones(1, 3, dtype=torch.float32)})  # float32 -> float64 is safe
    want = np.concatenate([strided.numpy(), np.zeros((2, 3)), np.ones((1, 3))])
    np.testing.assert_array_equal(read(tmp_path / "s.bale", "x"), want)


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [
        ("bool", "bool"),
        ("float16", "float16"),
        ("bfloat16", "bfloat16"),
        ("uint8", "uint8"),
        ("int16", "int16"),
        ("complex64", "complex64"),
    ],
)
def test_torch_dtypes(tmp_path: Path, dtype: str, stored: str) -> None:
    values = (torch.arange(12) % 3).reshape(4, 3).to(getattr(torch, dtype))
    bale.write(tmp_path / "d.bale", {"v": values})
    with bale.open(tmp_path / "d.bale") as ds:
        assert ds.schema["v"].type == bale.Array(stored, (3,))
    got = read(tmp_path / "d.bale", "v")
    want = values.float().numpy() if dtype == "bfloat16" else values.numpy()
    np.testing.assert_array_equal(got.astype(want.dtype), want)


def test_conversion_shares_memory() -> None:
    tensor = torch.zeros(3, 4)
    array = as_numpy("x", tensor)
    assert isinstance(array, np.ndarray) and np.shares_memory(array, tensor.numpy())
    bf16 = torch.zeros(3, dtype=torch.bfloat16)
    assert as_numpy("x", bf16).dtype.name == "bfloat16"
    plain = np.zeros(2)
    assert as_numpy("x", plain) is plain and as_numpy("x", [1, 2]) == [1, 2]


def test_a_tensor_that_requires_grad_is_refused(tmp_path: Path) -> None:
    weights = torch.ones(4, 2, requires_grad=True)
    with pytest.raises(SchemaError) as caught:
        bale.write(tmp_path / "g.bale", {"w": weights})
    message = str(caught.value)
    assert "column 'w'" in message and "requires grad" in message
    assert "tensor.detach()" in message
    bale.write(tmp_path / "g.bale", {"w": weights.detach()})
    np.testing.assert_array_equal(read(tmp_path / "g.bale", "w"), np.ones((4, 2), np.float32))
    with bale.Writer(tmp_path / "h.bale") as writer:
        writer.write({"w": np.zeros((1, 2), np.float32)})
        with pytest.raises(SchemaError, match=r"h\.bale.*column 'w': got a torch.Tensor that"):
            writer.write({"w": weights})


class OnDevice:
    """A DLPack producer whose memory is not on the host (as a CUDA tensor is)."""

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise AssertionError("a device buffer must not be exported")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)  # kDLCUDA, device 0


def test_array_protocols_and_device_memory(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})  # has __array__ only
    bale.write(tmp_path / "a.bale", {"x": frame})
    np.testing.assert_array_equal(read(tmp_path / "a.bale", "x"), frame.to_numpy())
    with pytest.raises(SchemaError, match=r"column 'x': got a .*OnDevice on device .*copy it to"):
        bale.write(tmp_path / "b.bale", {"x": OnDevice()})


class _OnlyArrayProtocol:
    """An array-like that NumPy can read but that cannot be sliced or measured with len()."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return self._data


def test_a_first_batch_of_array_protocol_objects_sets_the_schema(tmp_path: Path) -> None:
    """The schema is inferred from what will be stored: an object with only ``__array__`` (no
    len, no slicing) in the first batch is converted before inference."""
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    bale.write(tmp_path / "a.bale", {"x": _OnlyArrayProtocol(x)})
    with bale.open(tmp_path / "a.bale") as ds:
        np.testing.assert_array_equal(ds["x"][:], x)
