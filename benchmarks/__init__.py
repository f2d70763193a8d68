"""The cka-sim benchmark suite: ``python -m benchmarks`` (see :mod:`benchmarks.run`)."""
