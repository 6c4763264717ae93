"""bale's benchmarks: one script per topic, run from the repository root as ``python -m bench.X``.

Shared helpers: ``machine`` (what the machine and the measured source are, how busy the machine
is, peak RSS, bytes read, page-cache eviction), ``stats`` (medians with their range),
``results`` (where reports go), ``photo_data`` (the three data kinds, made from real photos).
``bench/suite`` is the comparative suite, run in its own environment (.venv-bench). Importing
any module here has no side effects: each script does its work in ``main()``.
"""
