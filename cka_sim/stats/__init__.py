"""Statistics for CKA: permutation tests of independence and confidence intervals.

- :func:`permutation_test`: is the similarity of two representations more than chance?
- :func:`bootstrap_ci`: how precisely is the population CKA known from these examples?
- :func:`cka_matrix_with_uncertainty`: both, for every pair of layers, as a
  :class:`~cka_sim.CKAResult`.

All three work on NumPy float64 (torch tensors are converted) and evaluate CKA for a batch of
permutations or resamples with a few BLAS calls. See ``docs/statistics.md``.
"""

from ._results import BootstrapResult, ConfidenceInterval, PermutationTestResult
from .bootstrap import bootstrap_ci
from .layerwise import cka_matrix_with_uncertainty
from .permutation import permutation_test

__all__ = [
    "BootstrapResult",
    "ConfidenceInterval",
    "PermutationTestResult",
    "bootstrap_ci",
    "cka_matrix_with_uncertainty",
    "permutation_test",
]
