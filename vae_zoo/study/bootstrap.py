r"""Model-level bootstrap of pair statistics: intervals that treat models, not pairs, as units.

The study's comparison groups are means over *pairs* of models (two models trained on different
datasets, on the same dataset with other seeds, a trained and an untrained model). Pairs built
from the same models are not independent: the 24 cross-dataset pairs of 8 models carry the
variation of 8 models, not of 24 draws. Resampling pairs therefore gives intervals that are too
narrow. Here the units of resampling are the models themselves.

One replicate:

1. **Models.** Within each stratum of models (the seeds of one training dataset; the untrained
   baselines), draw ``k - 1`` of its ``k`` models with replacement (the rescaled bootstrap of Rao
   & Wu 1988, whose variance of a stratum mean is unbiased even for ``k = 3``; a stratum of two
   draws two, since one model makes no pair, and its spread is then underestimated). Model
   ``m`` gets weight :math:`w_m`, the number of times it was drawn.
2. **Pairs.** Every pair among the drawn models is recomputed: a group's mean becomes
   :math:`\sum_{a \ne b} w_a w_b\, v_{ab} / \sum_{a \ne b} w_a w_b` over the group's pairs, so a
   model drawn twice enters each of its pairs twice, and a model is never paired with its own
   copy.
3. **Examples.** Jointly, each evaluation set contributes the deviation of one random half of its
   examples from the mean over halves: :math:`v_{ab} \to v_{ab} + (h_{ab} - \bar h_{ab})`. For a
   half-sample drawn without replacement the deviation has about the variance of the full-data
   estimate.

Evaluation datasets are fixed, not resampled: the claims are about these datasets. Each
evaluation set's group mean has equal weight. Intervals are percentile intervals of the
replicates; ``tests/test_study_bootstrap.py`` checks their coverage on synthetic zoos with known
between-model variance.

References
----------
J. N. K. Rao and C. F. J. Wu, "Resampling inference with complex survey data", JASA 83, 1988.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairData", "group_replicates", "model_weights", "percentile_interval"]


@dataclass
class PairData:
    """Values of one measure between all models on one evaluation set.

    Attributes
    ----------
    full : numpy.ndarray, shape (M, M, U)
        ``full[a, b, u]``: the measure between models ``a`` and ``b`` at unit (layer) ``u``, on
        all examples. NaN where undefined; only the group masks' cells are read.
    halves : numpy.ndarray, shape (H, M, M, U), optional
        The same on ``H`` random halves of the examples (None: no example-level term).
    """

    full: np.ndarray
    halves: np.ndarray | None = None


def model_weights(
    strata: Sequence[Sequence[int]], n_models: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap weights ``(resamples, n_models)``: draws of ``max(k - 1, 2)`` of ``k`` per stratum.

    A stratum with one model keeps it (weight 1): it cannot be resampled.
    """
    weights = np.zeros((resamples, n_models))
    for members in strata:
        members = np.asarray(members)
        k = len(members)
        if k == 1:
            weights[:, members[0]] = 1.0
            continue
        draws = rng.integers(0, k, (resamples, max(k - 1, 2)))
        counts = (draws[:, :, None] == np.arange(k)[None, None, :]).sum(axis=1)
        weights[:, members] = counts
    return weights


def _group_means(
    data: PairData, mask: np.ndarray, weights: np.ndarray, half_index: np.ndarray | None
) -> np.ndarray:
    """Weighted group mean per replicate and unit, ``(R, U)`` (NaN where no pair is left)."""
    pair_w = weights[:, :, None] * weights[:, None, :] * mask[None]  # (R, M, M)
    finite = np.isfinite(data.full)
    values = np.where(finite, data.full, 0.0)
    num = np.einsum("rab,abu->ru", pair_w, values)
    den = np.einsum("rab,abu->ru", pair_w, finite.astype(float))
    if data.halves is not None and half_index is not None:
        finite_h = np.isfinite(data.halves)
        halves = np.where(finite_h, data.halves, 0.0)
        count = finite_h.sum(axis=0)
        mean = halves.sum(axis=0) / np.maximum(count, 1)
        dev = np.where(finite_h, halves - mean, 0.0)
        for h in np.unique(half_index):
            rows = half_index == h
            num[rows] += np.einsum("rab,abu->ru", pair_w[rows], dev[h] * finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def group_replicates(
    evals: Sequence[PairData],
    masks: Mapping[str, np.ndarray],
    strata: Sequence[Sequence[int]],
    *,
    resamples: int,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Point estimates and model-level bootstrap replicates of every group's mean per unit.

    Parameters
    ----------
    evals : sequence of PairData
        One per evaluation set, all over the same models and units.
    masks : mapping
        ``{group: (M, M) bool}``: the pairs ``(a, b)`` of each comparison group (each unordered
        pair once, never ``a == b``).
    strata : sequence of sequences of int
        Model indices resampled together (see the module docstring).
    resamples : int
        Number of replicates.
    seed : int
        Seed of the resampling.

    Returns
    -------
    point, replicates : dict
        ``{group: (U,)}`` means over evaluation sets of the group means, and ``{group: (R, U)}``
        their replicates.
    """
    rng = np.random.default_rng(seed)
    n_models = evals[0].full.shape[0]
    weights = model_weights(strata, n_models, resamples, rng)
    halves = [
        rng.integers(0, len(e.halves), resamples) if e.halves is not None else None for e in evals
    ]
    ones = np.ones((1, n_models))
    point: dict[str, np.ndarray] = {}
    reps: dict[str, np.ndarray] = {}
    for group, mask in masks.items():
        mask = np.asarray(mask, dtype=float)
        point[group] = _mean_over_evals(
            np.stack([_group_means(e, mask, ones, None)[0] for e in evals])
        )
        reps[group] = _mean_over_evals(
            np.stack(
                [_group_means(e, mask, weights, h) for e, h in zip(evals, halves, strict=True)]
            )
        )
    return point, reps


def _mean_over_evals(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the finite values (NaN where none is finite), without warnings."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of finite replicates (NaN if none)."""
    finite = np.asarray(replicates)[np.isfinite(replicates)]
    if not len(finite):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)
