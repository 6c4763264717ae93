"""The comparative benchmark suite: bale against the dataset formats people use, same data, same run.

Layout: ``data.py`` (deterministic sources), ``adapters/`` (one small class per tool),
``measure.py`` (one measurement in a fresh process), ``limits.py`` (what the machine allows),
``run.py`` (the driver), ``report.py`` (tables and plots). See bench/suite/README.md.
"""
