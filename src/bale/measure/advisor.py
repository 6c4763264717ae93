"""The codec advisor's public surface: measure candidate codecs on a sample of each column and
recommend one. Its parts: ``sampling`` (the sample), ``codec_measuring`` (the measurements),
``codec_report`` (the report and the goals' rules), ``codec_words`` (the plain words).

Each column of a sample batch is cut into row groups and encoded exactly as ``bale.Writer`` would
store it with ``codecs={column: spec}`` (the encode path the Writer uses, ``bale._core.encode``):
arrays as their raw bytes (blosc2 tuned as the Writer tunes it: the channel count for
channels-last 8-bit images, else the item size), bytes and strings packed as length-prefixed
rows. Every candidate is timed on one
thread and its output decoded and compared with the input; a codec that does not give the input
back is excluded. Speeds are MB/s of raw data (1 MB = 10**6 bytes) per core, the median of
``repeats`` runs, counted per second of the measuring thread's CPU time: on a shared machine the
wall clock also measures the other jobs (wall-clock speeds are kept beside them).

>>> report = measure_codecs({"image": images, "label": labels})  # doctest: +SKIP
>>> report.recommend("balanced")  # doctest: +SKIP
{'label': 'zstd:1'}
>>> recommend_codecs(first_batch, "smallest", read_rate=300)  # doctest: +SKIP

The goals, for each column (``read_rate`` replaces the decode floor when given). Speed floors
are judged per row: a column holding a fraction s of each row's raw bytes (``row_share``) passes
a floor of F MB/s when it decodes at F x s MB/s, so a small label column is not held to the
speed of the images beside it (its per-call overhead costs little per row).

- ``"smallest"``: the best ratio among codecs decoding at >= 100 MB/s.
- ``"balanced"``: the best ratio among codecs decoding at >= 300 MB/s (per row) and compressing
  at >= 100 MB/s (the codec's own speed, not scaled per row: the advice never recommends a
  codec compressing slower than it says), ratios within 2% of it counting as equal (then the
  faster decoder wins); ``none`` when no codec saves 5% (best ratio below 1.05).
- ``"fastest"``: the codec with the highest write-and-read throughput (one compression and one
  decoding, ``write_read_mbps``) among codecs within 10% of the best ratio or storing at most 1%
  of the raw size more than it; ``none`` when no codec saves 5%.

A column holding under 1% of each row's raw bytes (``TINY_COLUMN_SHARE``: labels, paths beside
images) is tiny: unless candidates are named for it, only bale's default is measured, every goal
keeps it, and ``recommend`` leaves it out (the Writer applies the default).

``none`` (stored as is: no work to write or read) is always measured and is the fallback.
"""

from __future__ import annotations

from bale.measure.codec_measuring import candidate_codecs, measure_codecs, recommend_codecs
from bale.measure.codec_report import (
    BALANCED_MIN_COMPRESS_MBPS,
    BALANCED_MIN_DECODE_MBPS,
    BALANCED_RATIO_TIE,
    FASTEST_RATIO_SLACK,
    FASTEST_SIZE_SLACK,
    GOALS,
    SMALLEST_MIN_DECODE_MBPS,
    TINY_COLUMN_SHARE,
    WORTH_COMPRESSING,
    AdvisorReport,
    CodecResult,
    ColumnReport,
    Goal,
    near_best_ratio,
    write_read_mbps,
)
from bale.measure.machine import describe_machine
from bale.measure.sampling import DEFAULT_SAMPLE_BYTES, sample_file, sample_source

__all__ = [
    "BALANCED_MIN_COMPRESS_MBPS",
    "BALANCED_MIN_DECODE_MBPS",
    "BALANCED_RATIO_TIE",
    "DEFAULT_SAMPLE_BYTES",
    "FASTEST_RATIO_SLACK",
    "FASTEST_SIZE_SLACK",
    "GOALS",
    "SMALLEST_MIN_DECODE_MBPS",
    "TINY_COLUMN_SHARE",
    "WORTH_COMPRESSING",
    "AdvisorReport",
    "CodecResult",
    "ColumnReport",
    "Goal",
    "candidate_codecs",
    "describe_machine",
    "measure_codecs",
    "near_best_ratio",
    "recommend_codecs",
    "sample_file",
    "sample_source",
    "write_read_mbps",
]
