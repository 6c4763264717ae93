"""Contact sheets (`bale show`): chosen rows of an image column drawn as tiles in one PNG, each
with its row number and label or class name under it.

>>> sheet = bale.ops.show.contact_sheet("train.bale", "0:64")  # doctest: +SKIP
>>> sheet.path  # doctest: +SKIP
'train.png'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import BaleError, TargetExistsError
from bale.io.remote_url import is_remote
from bale.ops.image_columns import find_image_column, find_label_column, pil

__all__ = ["DEFAULT_ROWS", "MAX_TILES", "ContactSheet", "contact_sheet", "parse_rows", "sheet_path"]

#: Rows shown when none are chosen: the first 64.
DEFAULT_ROWS = 64
#: The most tiles one sheet holds (a 1024-tile sheet of 128-pixel tiles is about 50 MB of RGB).
MAX_TILES = 1024

_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)
_PAD = 4
_LINE = 12  # the height of a line of Pillow's default bitmap font, with a little air


@dataclass(frozen=True)
class ContactSheet:
    """What ``contact_sheet`` drew: the PNG written, the rows in it, the columns used, each
    tile's caption, and the rows that could not be drawn (row -> why; each such tile says so)."""

    path: str
    rows: tuple[int, ...]
    column: str
    label_column: str | None
    captions: tuple[str, ...]
    failed: Mapping[int, str]
    width: int
    height: int


def parse_rows(text: str, num_rows: int) -> list[int]:
    """``"0:64"``, ``"10:"``, ``":8"``, ``"0:100:10"``, ``"3,7,42"`` or ``"-1"`` -> row numbers
    (negative ones count from the end). A ValueError naming the text when it does not parse."""
    rows: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if ":" in part:
                bits = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bits) > 3:
                    raise ValueError
                rows.extend(range(num_rows)[slice(*bits)])
            else:
                rows.append(int(part))
        except ValueError:
            raise ValueError(
                f"rows {text!r}: expected START:STOP[:STEP] or a comma-separated list of row "
                "numbers, like 0:64 or 3,7,42"
            ) from None
    return rows


def sheet_path(source: str) -> str:
    """The default output: the file's name with ``.png`` for ``.bale``, in the current directory."""
    name = source.rstrip("/").rsplit("/", 1)[-1] if is_remote(source) else os.path.basename(source)
    stem = name[: -len(".bale")] if name.endswith(".bale") else name
    return f"{stem or 'sheet'}.png"


def contact_sheet(
    path: str | os.PathLike[str],
    rows: str | Sequence[int] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    column: str | None = None,
    label: str | None = None,
    random: int | None = None,
    seed: int = 0,
    size: int = 128,
    per_row: int | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> ContactSheet:
    """Draw rows of an image column of ``path`` as a grid of ``size`` x ``size`` tiles (each
    image scaled to fit, keeping its shape; a small one enlarged by a whole factor) with
    ``row: label`` under each, and save the PNG to ``out`` (default: the file's stem +
    ``.png`` in the current directory; an existing file is refused unless ``overwrite``).

    ``rows``: row numbers, or text as ``parse_rows`` reads it; default the first 64. ``random``:
    that many rows drawn at random with ``seed`` instead (shown in row order). ``column``: the
    image column (default: the first that holds images, see ``bale.ops.image_columns``);
    ``label``: the label column (default: one named label, y, target, ...; class names from
    ``metadata["classes"]``). A row that cannot be decoded is drawn as a tile saying why.
    """
    source = os.fspath(path)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if per_row is not None and per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    if random is not None and rows is not None:
        raise ValueError("give rows or random, not both")
    target = os.fspath(out) if out is not None else sheet_path(source)
    if os.path.exists(target) and not overwrite:
        raise TargetExistsError(
            "it exists; pass overwrite=True (--overwrite) to replace it, or choose -o", path=target
        )
    options = storage_options if is_remote(source) else None
    with Dataset(source, storage_options=options) as ds:
        picked = _pick_rows(ds, rows, random, seed)
        image_column = find_image_column(ds, column)
        label_column = find_label_column(ds, label, exclude=[image_column.name])
        names = [image_column.name] + ([label_column.name] if label_column else [])
        batch = ds.take(np.asarray(picked, dtype=np.int64), names) if picked else {}
    image = pil()
    from PIL import ImageDraw, ImageFont  # Pillow is present: pil() checked it

    font = ImageFont.load_default()
    per_row = per_row or max(1, math.ceil(math.sqrt(len(picked))))
    grid_rows = max(1, math.ceil(len(picked) / per_row))
    tile_w, tile_h = size + 2 * _PAD, size + 2 * _PAD + 2 * _LINE
    sheet = image.new("RGB", (per_row * tile_w, grid_rows * tile_h), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    failed: dict[int, str] = {}
    captions: list[str] = []
    for i, row in enumerate(picked):
        x, y = (i % per_row) * tile_w, (i // per_row) * tile_h
        caption = f"{row}"
        if label_column is not None:
            caption += f": {label_column.class_name(batch[label_column.name][i])}"
        captions.append(caption)
        try:
            tile = _thumbnail(image_column.to_pil(batch[image_column.name][i]), size)
        except Exception as exc:  # any undecodable row: drawn as a tile that says why
            failed[row] = f"{type(exc).__name__}: {exc}"
            draw.rectangle((x + _PAD, y + _PAD, x + _PAD + size, y + _PAD + size), outline=_TEXT)
            draw.text((x + 2 * _PAD, y + 2 * _PAD), "cannot decode", fill=_TEXT, font=font)
        else:
            sheet.paste(
                tile, (x + _PAD + (size - tile.width) // 2, y + _PAD + (size - tile.height) // 2)
            )
        for n, line in enumerate(_wrapped(draw, caption, font, size)):
            draw.text((x + _PAD, y + _PAD + size + 2 + n * _LINE), line, fill=_TEXT, font=font)
    partial = f"{target}.partial"
    sheet.save(partial, format="PNG")
    os.replace(partial, target)
    return ContactSheet(
        target,
        tuple(picked),
        image_column.name,
        label_column.name if label_column else None,
        tuple(captions),
        failed,
        sheet.width,
        sheet.height,
    )


def _pick_rows(
    ds: Dataset, rows: str | Sequence[int] | None, random: int | None, seed: int
) -> list[int]:
    n = len(ds)
    if random is not None:
        if random < 1:
            raise ValueError(f"random must be at least 1, got {random}")
        generator = np.random.default_rng(seed)
        picked = sorted(int(r) for r in generator.choice(n, size=min(random, n), replace=False))
    elif rows is None:
        picked = list(range(min(n, DEFAULT_ROWS)))
    elif isinstance(rows, str):
        picked = parse_rows(rows, n)
    else:
        picked = [int(r) for r in rows]
    outside = [r for r in picked if not -n <= r < n]
    if outside:
        raise BaleError(
            f"rows {outside[:5]} are outside the file's {n} rows (0..{n - 1})",
            path=ds.path,
            rows=(min(outside), max(outside) + 1),
        )
    picked = [r % n for r in picked]
    if not picked:
        raise BaleError("no rows to show" + (" (the file is empty)" if not n else ""), path=ds.path)
    if len(picked) > MAX_TILES:
        asked = random if random is not None else len(picked)  # not the rows it was cut to
        raise BaleError(
            f"{asked} rows asked for; a sheet holds at most {MAX_TILES}: choose fewer "
            "(e.g. --rows 0:256 or --random 256)",
            path=ds.path,
        )
    return picked


def _thumbnail(picture: Any, size: int) -> Any:
    """``picture`` scaled to fit ``size`` x ``size`` (a JPEG decoded at a reduced scale when it
    is much larger), as RGB: transparency over the sheet's background, greys as greys."""
    image = pil()
    if picture.format == "JPEG":
        picture.draft("RGB", (size, size))
    picture.thumbnail((size, size), image.Resampling.BILINEAR)
    # Small images (MNIST's 28x28, CIFAR's 32x32) are enlarged by a whole factor, each pixel
    # a square block: left as they are they were specks in the middle of their tiles.
    factor = size // max(picture.width, picture.height)
    if factor >= 2:
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), image.Resampling.NEAREST
        )
    if picture.mode in ("RGBA", "LA", "P", "PA"):
        picture = picture.convert("RGBA")
        base = image.new("RGBA", picture.size, (*_BACKGROUND, 255))
        picture = image.alpha_composite(base, picture)
    if picture.mode.startswith("I") or picture.mode == "F":
        values = np.asarray(picture, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255 / (high - low)) if high > low else values * 0
        picture = image.fromarray(scaled.astype(np.uint8))
    return picture.convert("RGB")


def _wrapped(draw: Any, text: str, font: Any, width: int) -> list[str]:
    """``text`` cut to two lines that fit ``width`` pixels (the second ends in '...' if cut)."""
    lines: list[str] = []
    rest = text
    while rest and len(lines) < 2:
        cut = len(rest)
        while cut > 1 and draw.textlength(rest[:cut], font=font) > width:
            cut -= 1
        space = rest.rfind(" ", 0, cut)
        if cut < len(rest) and len(lines) == 0 and space > 0:
            cut = space + 1  # break between words when the first line has a space
        if len(lines) == 1 and cut < len(rest):
            cut = max(1, cut - 3)
            lines.append(rest[:cut] + "...")
            break
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:]
    return lines
