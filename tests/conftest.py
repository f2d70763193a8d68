"""Shared test configuration.

``CKA_SIM_TEST_THREADS=N`` runs the whole suite with N threads for BLAS/OpenMP
(``OMP_NUM_THREADS`` and friends) and for torch (``torch.set_num_threads``). CI runs the suite
twice, with the machine's default thread count and with ``CKA_SIM_TEST_THREADS=1``, so a test
that depends on the order of floating-point sums fails there, not on a user's machine.
"""

import os

_THREADS = os.environ.get("CKA_SIM_TEST_THREADS")
if _THREADS:
    if not _THREADS.isdigit() or int(_THREADS) < 1:
        raise ValueError(f"CKA_SIM_TEST_THREADS must be a positive integer; got {_THREADS!r}")
    # Set before NumPy or torch load their thread pools (it reaches subprocesses too).
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_name] = _THREADS

from hypothesis import settings  # noqa: E402

# Property tests run a moderate number of examples with no per-example deadline: CI machines are
# small and shared, and timing is not what these tests check.
settings.register_profile("cka-sim", max_examples=30, deadline=None)
settings.load_profile("cka-sim")


def pytest_configure(config) -> None:
    if _THREADS:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(int(_THREADS))


def pytest_report_header(config) -> str:
    return f"threads: {_THREADS or 'default'} (set CKA_SIM_TEST_THREADS=N to fix the count)"
