"""sokka's benchmarks: each prints its figures and their ratios, on one shared harness.

Entry points (each runs as a file or as a module, with the same flags)::

    python bench/core_supervision.py [--quick]     # or: python -m bench.core_supervision
    python bench/store_ops.py [--quick] [--stores ...] [--postgres-url ...] [--profile]
    python bench/throughput.py [--quick] [--profile [cprofile|py-spy]] [--workers 1,2,4] ...

What they share lives in ``bench.harness`` (flags, checks, timing, ratios,
tables, versions, PostgreSQL set-up) and ``bench.profiling`` (cProfile and
py-spy, and reading their results). The store benchmark's parts, by what they
measure, are in ``bench.stores``; the throughput benchmark drives and times its
worker processes with ``bench.drain``, and its peers (pgqueuer, procrastinate)
``bench.peers``.

Each entry script, run as a file, puts the repository first on ``sys.path``
(in place of ``bench/`` itself), so ``bench`` and ``sokka`` import the same
way in both forms.
"""
