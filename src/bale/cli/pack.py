"""The `bale pack` command: its parser, source options, and the printed summary."""

from __future__ import annotations

import argparse
import os
from typing import Any

from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_overwrite_flag,
    add_quiet_flag,
    add_storage_option,
    fail,
    show_progress,
    storage_options,
)
from bale.errors import BaleError, TargetExistsError
from bale.importers.hdf5 import split_groups
from bale.importers.image_folder import find_splits
from bale.io.remote_url import is_remote
from bale.ops.pack import DEFAULT_MEMORY_BUDGET, PackReport, pack, pack_splits

USAGE = """bale pack [options] SOURCE OUT
       bale pack [options] SOURCE SOURCE... OUT
       bale pack [options] --column NAME=SOURCE [--column NAME=SOURCE ...] OUT"""

EPILOG = """examples:
  bale pack photos/ photos.bale --size 224x224
  bale pack kaggle/ packed/
      kaggle/ holds only train/ test/ (valid/, test_stg1/, ...): packed/train.bale, ...
  bale pack kaggle/train train.bale
      one split: its sub-folders are the classes
  bale pack data.h5:train train.bale
      one HDF5 group: columns x, y (not train.x); its classes dataset names the labels
  bale pack data.h5 packed/
      data.h5 holds train/ and test/ groups: packed/train.bale, packed/test.bale
  bale pack data.h5 xy.bale --dataset /train/x --dataset /train/y
  bale pack X.npy y.npy xy.bale
      two aligned arrays, one file: columns X and y, shuffled together
  bale pack --trust-pickle --column x=X.bcolz --column y=y.bcolz xy.bale
"""


def add_pack_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "pack",
        help="pack an image folder, a manifest, .npy/.npz, HDF5, zarr, pickle or bcolz into .bale",
        description="Write every row of SOURCE to OUT, shuffled (seeded) unless --no-shuffle. "
        "SOURCE: an image folder (one sub-folder per class), a manifest (.csv/.tsv/.json/"
        ".jsonl listing image paths, labels and extra columns), .npy, .npz, .h5/.hdf5 "
        "(FILE.h5:GROUP for one group), .pkl/.pickle or .pkl.gz/.bz2/.xz/.zst (with "
        "--trust-pickle), a zarr array or "
        "group, or a bcolz folder. Several SOURCEs (or --column NAME=SOURCE) of the same "
        "length become the columns of one file, shuffled together. A folder holding only "
        "split folders (train/, valid/, val/, test/, test_*/...), or an HDF5 file whose "
        "top-level groups are such splits, is packed into one file per split inside OUT (a "
        "folder). Unreadable images are skipped and counted unless "
        "--strict. Exit 0: written; 2: stopped (nothing is left under OUT). More in the bale "
        "repository's docs/PACK.md.",
        epilog=EPILOG,
        usage=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="SOURCE... OUT",
        help="the input(s), then the .bale file to write (a folder for split folders)",
    )
    parser.add_argument(
        "--column",
        action="append",
        metavar="NAME=SOURCE",
        help="an input whose rows become column NAME (NAME.COLUMN for an input with several "
        "columns); repeat to join aligned inputs into one file",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="PATH",
        help="an HDF5 dataset to pack (a path inside the file, relative to FILE.h5:GROUP if "
        "given); repeatable. Default: every dataset as long as the largest",
    )
    parser.add_argument(
        "--no-shuffle", dest="shuffle", action="store_false", help="keep the source's order"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    parser.add_argument(
        "--size",
        "--resize",
        dest="size",
        type=_size,
        metavar="HxW",
        help="decode images and store uint8 HxWx3 arrays of exactly this size "
        "(default: store the image files' bytes unchanged)",
    )
    parser.add_argument(
        "--resize-mode",
        choices=("crop", "stretch"),
        help="crop (default): keep the aspect ratio, cut the centre; stretch: scale to HxW",
    )
    parser.add_argument(
        "--codec",
        action="append",
        metavar="auto|SPEC|COLUMN=SPEC",
        help="codecs: 'auto' (measured on the first rows), a SPEC for every column "
        "(zstd:3, lz4, none, blosc2:zstd:1:shuffle+bytedelta), or COLUMN=SPEC; repeatable",
    )
    parser.add_argument(
        "--workers", type=int, help="processes reading and decoding (default: one per CPU)"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    add_overwrite_flag(parser, "replace OUT if it exists")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow reading a pickle file (unpickling can run any code: only for files you trust)",
    )
    parser.add_argument(
        "--manifest-root", metavar="DIR", help="folder the manifest's paths are relative to"
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="skip (and count) manifest rows whose file does not exist, instead of stopping",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=DEFAULT_MEMORY_BUDGET >> 20,
        metavar="MiB",
        help="memory for rows in flight and for one shuffle bucket "
        f"(default {DEFAULT_MEMORY_BUDGET >> 20})",
    )
    parser.add_argument(
        "--temp-dir", metavar="DIR", help="where shuffle buckets go (default: beside OUT)"
    )
    parser.add_argument(
        "--random-access",
        action="store_true",
        help="store frames of about 16 KiB (whole rows) with a frame index: random rows (ds[i], map-style samplers) "
        "decode only their frame, sequential reads are somewhat slower",
    )
    add_quiet_flag(parser)
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="read, check and resize the source on a dask.distributed cluster "
        "(tcp://host:8786) instead of local processes; its workers must see SOURCE at the "
        "same path (or URL). The file is written here and is the one a local pack writes",
    )
    cluster.add_argument(
        "--ray",
        action="store_true",
        help="read the source with Ray tasks: the running Ray cluster (ray start), else a "
        "local Ray; same file as a local pack",
    )
    cluster.add_argument(
        "--ray-address",
        metavar="ray://HOST:PORT",
        type=_ray_address,
        help="like --ray, on the Ray cluster whose client server is at this address "
        "(ray://head:10001); on a node of the cluster, --ray finds it",
    )
    add_storage_option(parser)
    parser.set_defaults(run=run_pack)


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW like 224x224 (or one number), got {text!r}")
    return values[0], values[1]


def _ray_address(text: str) -> str:
    if not text.startswith("ray://") or len(text) == len("ray://"):
        raise argparse.ArgumentTypeError(
            f"expected a Ray client address like ray://head:10001, got {text!r} (on a node of "
            "the cluster, --ray connects to it)"
        )
    return text


def _codecs(items: list[str] | None) -> dict[str, str] | None:
    """``--codec`` values -> pack's codecs: a bare value applies to every column (``"*"``)."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        column, sep, spec = item.partition("=")
        if sep:
            out[column.strip()] = spec.strip()
        else:
            out["*"] = item.strip()
    return out


def _scheduler(args: argparse.Namespace) -> str | None:
    """``--scheduler`` / ``--ray`` / ``--ray-address`` -> pack's ``scheduler``."""
    if args.ray_address:
        return str(args.ray_address)
    if args.ray:
        return "ray"
    return str(args.scheduler) if args.scheduler else None


def _inputs(args: argparse.Namespace) -> tuple[str | list[str] | dict[str, str], str]:
    """(what to pack: one path, a list of paths or {column: path}; OUT) from the arguments."""
    *sources, out = args.paths
    if args.column:
        if sources:
            raise ValueError(
                f"give the inputs either as SOURCE arguments or as --column NAME=SOURCE, not "
                f"both (got {sources} and --column)"
            )
        named: dict[str, str] = {}
        for item in args.column:
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"--column expects NAME=SOURCE, got {item!r}")
            if name.strip() in named:
                raise ValueError(f"--column {name.strip()!r} is given twice")
            named[name.strip()] = path.strip()
        return named, out
    if not sources:
        raise ValueError("expected SOURCE and OUT (or --column NAME=SOURCE and OUT)")
    return (sources[0] if len(sources) == 1 else sources), out


def run_pack(args: argparse.Namespace) -> int:
    try:
        source, out = _inputs(args)
    except ValueError as exc:
        return fail("pack", exc)
    args.out = out
    source_options: dict[str, Any] = {}
    if args.size is not None:
        source_options["size"] = args.size
    if args.resize_mode is not None:
        source_options["resize_mode"] = args.resize_mode
    if args.trust_pickle:
        source_options["trust"] = True
    if args.manifest_root is not None:
        source_options["root"] = args.manifest_root
    if args.skip_missing:
        source_options["missing"] = "skip"
    if args.dataset:
        source_options["datasets"] = list(args.dataset)
    if args.storage_options and not is_remote(args.out):
        return fail(
            "pack",
            "--storage-option applies to an OUT that is a URL (s3://, gs://, az://); "
            "OUT is a local path",
        )
    options: dict[str, Any] = {
        "shuffle": args.shuffle,
        "seed": args.seed,
        "codecs": _codecs(args.codec),
        "workers": args.workers,
        "progress": show_progress(args),
        "strict": args.strict,
        "overwrite": args.overwrite,
        "memory_budget": max(1, args.memory) << 20,
        "temp_dir": args.temp_dir,
        "random_access": args.random_access,
        "storage_options": storage_options(args, args.out),
        "scheduler": _scheduler(args),
    }
    try:
        if isinstance(source, str) and find_splits(source):
            if args.out.endswith(".bale") or os.path.isfile(args.out):
                raise ValueError(
                    f"{source} holds split folders; give an output folder "
                    f"(e.g. `bale pack {source} packed/`): one .bale per split goes there"
                )
            for report in pack_splits(source, args.out, **options, **source_options).values():
                _print(report)
            return EXIT_OK
        groups = _hdf5_split_groups(source) if not args.dataset else []
        if groups and not (args.out.endswith(".bale") or os.path.isfile(args.out)):
            targets = _split_targets(args.out, groups, args.overwrite)
            for group, target in targets.items():
                _print(pack(f"{source}:{group}", target, **options, **source_options))
            return EXIT_OK
        _print(pack(source, args.out, **options, **source_options))
    except ValueError as exc:  # invalid option values (bale errors are reported by main)
        if isinstance(exc, BaleError):
            raise
        return fail("pack", exc)
    return EXIT_OK  # bale errors, OSErrors and a missing library's ImportError: reported by main


def _hdf5_split_groups(source: Any) -> list[str]:
    """An HDF5 file's split groups (train/, test/, ...), packed one file each into a folder."""
    if not isinstance(source, str) or not os.path.isfile(source):
        return []
    if os.path.splitext(source)[1].lower() not in (".h5", ".hdf5"):
        return []
    try:
        return split_groups(source)
    except ImportError:  # no h5py: pack says what to install
        return []


def _split_targets(out: str, groups: list[str], overwrite: bool) -> dict[str, str]:
    """OUT/GROUP.bale for each group, refusing before anything is packed if one exists."""
    if is_remote(out):
        return {g: f"{out.rstrip('/')}/{g}.bale" for g in groups}
    os.makedirs(out, exist_ok=True)
    targets = {g: os.path.join(out, f"{g}.bale") for g in groups}
    for target in targets.values():
        if os.path.exists(target) and not overwrite:
            raise TargetExistsError("the file exists; pass --overwrite to replace it", path=target)
    return targets


def _print(report: PackReport) -> None:
    print(report.summary())
