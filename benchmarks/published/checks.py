"""The published checks that need no trained network, or only one layer of it.

* :func:`bias_curve`: biased and debiased linear CKA of independent Gaussians over ``p / n``
  (Murphy et al. 2024).
* :func:`subset_translation`: CKA after shifting a subset of the points by ``c v`` (Davari et al.
  2023), against its limit as ``c`` grows, :func:`translation_limit`.
* :func:`rbf_to_linear`: RBF CKA against linear CKA as the bandwidth grows (Alvarez 2021).
* :func:`triangle_slack`: the triangle inequality of the angular Procrustes distance and of
  ``arccos`` CKA (Williams et al. 2021) over every triple of a set of representations.
"""

from __future__ import annotations

from itertools import combinations, permutations
from typing import Any

import numpy as np

from cka_sim import kernel_cka, linear_cka, procrustes_distance


def bias_curve(n: int, widths: list[int], draws: int, seed: int = 0) -> dict[str, Any]:
    """Mean and spread of biased and debiased linear CKA of independent ``(n, p)`` Gaussians.

    Parameters
    ----------
    n : int
        Examples.
    widths : list of int
        Features ``p`` of both representations.
    draws : int
        Independent pairs per width.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    dict
        ``n``, ``p``, ``p_over_n`` and per estimator (``biased``, ``debiased``) the ``mean`` and
        ``sd`` over draws at each width.
    """
    rng = np.random.default_rng(seed)
    values = {"biased": [], "debiased": []}
    for p in widths:
        pairs = [(rng.standard_normal((n, p)), rng.standard_normal((n, p))) for _ in range(draws)]
        for name in values:
            debiased = name == "debiased"
            values[name].append([float(linear_cka(x, y, debiased=debiased)) for x, y in pairs])
    out: dict[str, Any] = {"n": n, "p": list(widths), "p_over_n": [p / n for p in widths]}
    for name, rows in values.items():
        out[name] = {"mean": np.mean(rows, axis=1).tolist(), "sd": np.std(rows, axis=1).tolist()}
    return out


def translation_limit(x: np.ndarray, subset: np.ndarray) -> float:
    r"""The limit of ``linear_cka(x, x + c * subset[:, None] * v)`` as ``c`` grows, for any ``v``.

    With :math:`\bar X` centred, :math:`u` the centred indicator of the subset and :math:`v` a
    unit vector, :math:`\bar X' = \bar X + c\,u v^\top`. As :math:`c \to \infty`,
    :math:`\lVert\bar X^\top\bar X'\rVert_F^2 = c^2\lVert\bar X^\top u\rVert^2 + O(c)` and
    :math:`\lVert\bar X'^\top\bar X'\rVert_F = c^2\lVert u\rVert^2 + O(c)`, so

    .. math:: \lim_{c\to\infty}\mathrm{CKA}(X, X') = \frac{\lVert\bar X^\top u\rVert^2}
              {\lVert u\rVert^2\,\lVert\bar X^\top\bar X\rVert_F} = \mathrm{CKA}(X, s),

    the linear CKA of ``x`` with the one-column indicator ``s`` of the subset, whatever ``v``;
    the gap closes as :math:`O(1/c)`.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, p)
        The representation.
    subset : numpy.ndarray of bool, shape (n,)
        The translated points.

    Returns
    -------
    float
        The limit.
    """
    return float(linear_cka(x, subset[:, None].astype(float)))


def subset_translation(
    x: np.ndarray,
    subset: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    labels: np.ndarray,
    scales: list[float],
) -> dict[str, Any]:
    """CKA and a linear classifier's accuracy after translating ``subset`` along a direction
    the classifier cannot see.

    ``v`` is the unit vector of the null space of ``weight`` with the smallest index of largest
    magnitude sign fixed (so runs agree); the shift is ``c = scale * rms`` with ``rms`` the
    root-mean-square row norm of the centred ``x``, so scales are comparable across layers.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, p)
        The representation, input of the classifier ``x @ weight.T + bias``.
    subset : numpy.ndarray of bool, shape (n,)
        The translated points (for example one class).
    weight, bias : numpy.ndarray
        The classifier, shapes ``(k, p)`` with ``k < p``, and ``(k,)``.
    labels : numpy.ndarray, shape (n,)
        True classes.
    scales : list of float
        Shifts, in units of ``rms``.

    Returns
    -------
    dict
        ``scale``, ``cka`` and ``accuracy`` per shift, ``limit`` (:func:`translation_limit`),
        ``fraction`` (of points translated), ``accuracy_before``.
    """
    _, _, vt = np.linalg.svd(weight)
    v = vt[-1] * np.sign(vt[-1][np.argmax(np.abs(vt[-1]))])
    rms = float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))

    def accuracy(z: np.ndarray) -> float:
        return float(((z @ weight.T + bias).argmax(axis=1) == labels).mean())

    shifted = [x + scale * rms * subset[:, None] * v for scale in scales]
    return {
        "scale": list(scales),
        "cka": [float(linear_cka(x, z)) for z in shifted],
        "accuracy": [accuracy(z) for z in shifted],
        "accuracy_before": accuracy(x),
        "limit": translation_limit(x, subset),
        "fraction": float(subset.mean()),
    }


def rbf_to_linear(x: np.ndarray, y: np.ndarray, thresholds: list[float]) -> dict[str, Any]:
    """RBF CKA at growing bandwidths beside linear CKA of the same pair.

    Parameters
    ----------
    x, y : numpy.ndarray
        Two representations of the same examples.
    thresholds : list of float
        Bandwidths as multiples of the median distance.

    Returns
    -------
    dict
        ``threshold``, ``rbf`` (CKA per threshold), ``linear``, ``gap`` (``|rbf - linear|``).
    """
    linear = float(linear_cka(x, y))
    rbf = [float(kernel_cka(x, y, threshold=t)) for t in thresholds]
    return {
        "threshold": list(thresholds),
        "rbf": rbf,
        "linear": linear,
        "gap": [abs(r - linear) for r in rbf],
    }


def angles(reps: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Pairwise angular distances: ``arccos`` linear CKA, angular Procrustes, and ``1 - CKA``.

    Parameters
    ----------
    reps : list of numpy.ndarray
        Representations of the same examples.

    Returns
    -------
    dict
        ``arccos CKA``, ``angular Procrustes`` and (not a metric, for contrast) ``1 - CKA``:
        symmetric matrices with zero diagonal.
    """
    count = len(reps)
    out = {name: np.zeros((count, count)) for name in ("arccos CKA", "angular Procrustes")}
    out["1 - CKA"] = np.zeros((count, count))
    for i, j in combinations(range(count), 2):
        value = min(float(linear_cka(reps[i], reps[j])), 1.0)
        entries = {
            "arccos CKA": float(np.arccos(value)),
            "angular Procrustes": float(procrustes_distance(reps[i], reps[j], angular=True)),
            "1 - CKA": 1.0 - value,
        }
        for name, entry in entries.items():
            out[name][i, j] = out[name][j, i] = entry
    return out


def triangle_slack(distance: np.ndarray) -> dict[str, Any]:
    """How far every triple is from violating ``d(a, c) <= d(a, b) + d(b, c)``.

    Parameters
    ----------
    distance : numpy.ndarray, shape (m, m)
        Symmetric distances.

    Returns
    -------
    dict
        ``triples`` (ordered ``(a, b, c)`` checked), ``violations`` (slack below ``-1e-12``),
        ``min_slack`` (smallest ``d(a, b) + d(b, c) - d(a, c)``).
    """
    slack = [
        distance[a, b] + distance[b, c] - distance[a, c]
        for a, b, c in permutations(range(len(distance)), 3)
    ]
    return {
        "triples": len(slack),
        "violations": int(np.sum(np.array(slack) < -1e-12)),
        "min_slack": float(min(slack)),
    }
