"""The comparative benchmark suite: bale against the dataset formats people use, same data, same run.

Layout: ``data.py`` (deterministic sources), ``adapters/`` (one small class per tool),
``measure.py`` (one measurement in a fresh process), ``limits.py`` (what the machine allows),
``run.py`` (the driver), ``report.py`` (tables and plots). Shared with the other benchmarks:
``bench.machine`` (eviction, residency, RSS, load, the machine's description) and
``bench.photo_data`` (the data). See bench/suite/README.md.
"""
