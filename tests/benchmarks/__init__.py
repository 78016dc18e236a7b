"""On-demand benchmarks against Orthanc and DCMTK; never part of the test suite.

Run them as modules from the repository root, e.g. ``python -m tests.benchmarks.bench_find``;
see ``tests/benchmarks/README.md``.
"""
