"""CKA of every pair of layers on many index arrays at once (the shared compute loops)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ._engine import Permuted, Representation, batch_size, cka_from_terms, hsic_terms, restrict
from ._intervals import rescaled
from ._redraw import defined_half_samples
from ._resampling import jackknife_groups, split


def subset_table(
    reps_a: Sequence[Representation],
    reps_b: Sequence[Representation],
    blocks: Iterable[np.ndarray],
    *,
    debiased: bool,
) -> np.ndarray:
    """CKA (La, Lb, B) of each pair of layers on each index array (row) of ``blocks``.

    The same index arrays serve every cell. Each layer is re-centred on each index array.
    """
    layers = list(reps_a) + list(reps_b)
    widest = max(rep.width for rep in layers)
    out = []
    for block in blocks:
        size = max(1, batch_size(block.shape[1], widest) // len(layers))
        for idx in split(block, size):
            terms = [restrict(rep, idx, debiased=debiased) for rep in layers]
            selfs = [hsic_terms(t, t, debiased=debiased) for t in terms]
            ta, tb = terms[: len(reps_a)], terms[len(reps_a) :]
            sa, sb = selfs[: len(reps_a)], selfs[len(reps_a) :]
            chunk = np.empty((len(ta), len(tb), idx.shape[0]))
            for i, a in enumerate(ta):
                for j, b in enumerate(tb):
                    value = cka_from_terms(hsic_terms(a, b, debiased=debiased), sa[i], sb[j])
                    chunk[i, j] = np.where(a.constant | b.constant, np.nan, value)
            out.append(chunk)
    return np.concatenate(out, axis=2)


def permutation_table(
    reps_a: Sequence[Representation],
    reps_b: Sequence[Representation],
    blocks: Iterable[np.ndarray],
    *,
    debiased: bool,
) -> np.ndarray:
    """CKA (La, Lb, B) of each pair with the rows of the ``reps_b`` layers permuted.

    Only the numerators are recomputed; every column layer is gathered once per permutation and
    shared by all row layers.
    """
    fixed_a = [Permuted(rep, debiased=debiased) for rep in reps_a]
    fixed_b = [Permuted(rep, debiased=debiased) for rep in reps_b]
    widest = max(rep.width for rep in reps_b)
    out = []
    for block in blocks:
        for perms in split(block, batch_size(block.shape[1], widest)):
            chunk = np.empty((len(fixed_a), len(fixed_b), perms.shape[0]))
            for j, b in enumerate(fixed_b):
                gathered = b.gather(perms)
                for i, a in enumerate(fixed_a):
                    chunk[i, j] = cka_from_terms(
                        a.numerators(gathered), np.float64(a.self_term), np.float64(b.self_term)
                    )
            out.append(chunk)
    return np.concatenate(out, axis=2)


def observed_table(
    reps_a: Sequence[Representation], reps_b: Sequence[Representation], *, debiased: bool
) -> np.ndarray:
    """CKA (La, Lb) of the full data, computed by the same code as the resampled values."""
    n = reps_a[0].n
    return subset_table(reps_a, reps_b, [np.arange(n)[None, :]], debiased=debiased)[:, :, 0]


def permutation_pvalues(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """:math:`(1 + \\#\\{\\text{null} \\ge \\text{observed}\\})/(1 + B)` per cell.

    Values within 1e-12 of the observed CKA count as ties (>=), so that rounding in a
    different summation order never turns a tie into a strict inequality. NaN cells stay NaN.
    """
    tolerance = 1e-12 * np.maximum(1.0, np.abs(observed))
    exceed = np.sum(null >= (observed - tolerance)[..., None], axis=-1)
    pvalues = (1.0 + exceed) / (1.0 + null.shape[-1])
    return np.where(np.isnan(observed), np.nan, pvalues)


def resample_table(
    reps_a: Sequence[Representation],
    reps_b: Sequence[Representation],
    observed: np.ndarray,
    n_resamples: int,
    *,
    debiased: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescaled half-sample replicates (La, Lb, B), one set of half-samples for every cell,
    and the undefined half-samples each cell skipped (La, Lb) under the redraw rule of
    :mod:`~cka_sim.stats._redraw`."""
    n = reps_a[0].n

    def evaluate(blocks: Iterable[np.ndarray]) -> np.ndarray:
        return subset_table(reps_a, reps_b, blocks, debiased=debiased)

    raw, skipped = defined_half_samples(evaluate, rng, n, n_resamples, ~np.isnan(observed))
    return rescaled(observed, raw, n), skipped


def jackknife_table(
    reps_a: Sequence[Representation], reps_b: Sequence[Representation], *, debiased: bool
) -> np.ndarray:
    """Leave-group-out CKA (La, Lb, G) for the BCa acceleration."""
    n = reps_a[0].n
    columns = [
        subset_table(reps_a, reps_b, [keep[None, :]], debiased=debiased)[:, :, 0]
        for keep in jackknife_groups(n)
    ]
    return np.stack(columns, axis=-1)
