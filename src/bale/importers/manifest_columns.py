"""Manifest values -> typed columns: labels to class ids, other columns to number arrays or text.

Values come from JSON (numbers, lists, text) or CSV cells (always text): a column whose every
value reads as a number, or a list of numbers of one shape, becomes an int64 array when all are
integers and float32 otherwise; any other column is text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from bale.errors import BaleError
from bale.format.schema import Array, ColumnType, String
from bale.importers.image_files import SHOWN


def label_ids(
    manifest: str,
    records: list[dict[str, Any]],
    where: list[str],
    name: str,
    classes: Sequence[str] | None,
) -> tuple[np.ndarray, list[str] | None]:
    """The label column ``name`` as int64 ids, and the class names when labels were text (or
    ``classes`` was given): integer labels are kept, text labels index the sorted class names."""
    values = []
    for record, line in zip(records, where, strict=True):
        value = record.get(name)
        if value is None or value == "":
            raise BaleError(f"{line}: empty label", path=manifest, column=name)
        values.append(value)
    as_ints = [_as_int(v) for v in values]
    if classes is None and all(v is not None for v in as_ints):
        return np.asarray(as_ints, dtype=np.int64), None
    texts = [str(v) for v in values]
    class_names = list(classes) if classes is not None else sorted(set(texts))
    ids = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(texts) - set(ids))
    if unknown:
        raise BaleError(
            f"labels {unknown[:SHOWN]} are not in the given classes", path=manifest, column=name
        )
    return np.asarray([ids[t] for t in texts], dtype=np.int64), class_names


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _number_value(value: Any) -> Any:
    """A number or a (nested) list of numbers from a JSON value or a CSV cell, else None."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
        else:
            for convert in (int, float):
                try:
                    return convert(text)
                except ValueError:
                    pass
            return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        items = [_number_value(v) for v in value]
        return None if any(v is None for v in items) else items
    return None


def _shape(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(np.shape(value))
    except ValueError:  # ragged nested lists
        return None


def extra_column(
    manifest: str, records: list[dict[str, Any]], where: list[str], name: str
) -> tuple[np.ndarray | list[str], ColumnType]:
    """Column ``name`` as an int64 / float32 array when every value is a number (or a list of
    numbers of one shape), else as text; a number in a text column is an error."""
    raw = [record.get(name) for record in records]
    numbers = [_number_value(v) for v in raw]
    if all(v is not None for v in numbers):
        first = _shape(numbers[0])
        for value, line in zip(numbers, where, strict=True):
            if _shape(value) != first or first is None:
                raise BaleError(
                    f"{line}: a value of shape {_shape(value) or 'ragged'} where {where[0]} has shape "
                    f"{first}: every row of a number column needs one shape",
                    path=manifest,
                    column=name,
                )
        is_int = all(
            isinstance(x, int) for x in np.asarray(numbers, dtype=object).reshape(-1).tolist()
        )
        array = np.asarray(numbers, dtype=np.int64 if is_int else np.float32)
        return array, Array(array.dtype.name, array.shape[1:])
    texts = []
    for value, line in zip(raw, where, strict=True):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise BaleError(
                f"{line}: a number in a column that also holds text; store one kind per column",
                path=manifest,
                column=name,
            )
        if value is None:
            texts.append("")
        elif isinstance(value, str):
            texts.append(value)
        else:
            texts.append(json.dumps(value, ensure_ascii=False))
    return texts, String()
