"""cka-sim: exact, fast Centred Kernel Alignment (CKA) and HSIC for NumPy and PyTorch.

>>> import numpy as np
>>> from cka_sim import linear_cka
>>> x = np.random.default_rng(0).standard_normal((100, 10))
>>> round(linear_cka(x, 2 * x), 6)
1.0

The core needs only NumPy and SciPy; torch and matplotlib are optional extras and are never
imported by ``import cka_sim``. See ``docs/estimators.md`` for formulas and numerics.
"""

from ._version import __version__
from .accumulators import MinibatchCKA, StreamingCKA, StreamingCKAMatrix
from .cka import cka, kernel_cka, linear_cka
from .deconfounded import deconfounded_cka, deconfounded_cka_from_grams
from .exceptions import CKAUndefinedWarning
from .hsic import hsic
from .kernels import center_gram, gram_linear, gram_polynomial, gram_rbf
from .matrix import cka_matrix
from .procrustes import procrustes_distance, procrustes_similarity
from .result import CKAResult
from .stats import bootstrap_ci, cka_matrix_with_uncertainty, permutation_test

__all__ = [
    "CKAResult",
    "CKAUndefinedWarning",
    "MinibatchCKA",
    "StreamingCKA",
    "StreamingCKAMatrix",
    "__version__",
    "bootstrap_ci",
    "center_gram",
    "cka",
    "cka_matrix",
    "cka_matrix_with_uncertainty",
    "deconfounded_cka",
    "deconfounded_cka_from_grams",
    "gram_linear",
    "gram_polynomial",
    "gram_rbf",
    "hsic",
    "kernel_cka",
    "linear_cka",
    "permutation_test",
    "procrustes_distance",
    "procrustes_similarity",
]
