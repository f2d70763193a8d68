"""The ``measure=`` vocabulary shared by the accumulators, ``cka_matrix``, the statistics, the CLI.

- ``"cka"``: linear CKA (Kornblith et al. 2019), biased or debiased;
- ``"dcka"``: deconfounded linear CKA (Cui et al. 2022), which needs a ``confounder``;
- ``"procrustes"``: the orthogonal Procrustes similarity
  :math:`\\lVert \\bar X^\\top\\bar Y\\rVert_* / (\\lVert\\bar X\\rVert_F\\lVert\\bar Y\\rVert_F)` in
  [0, 1] (Ding et al. 2021); the distance is :math:`2 - 2s`
  (:func:`~cka_sim.procrustes_distance`). It has no debiased form.

Every measure is a similarity (1: the same up to the measure's invariances), so matrices,
heatmaps and one-sided tests read the same way whatever the measure.
"""

from __future__ import annotations

from typing import Any, Literal

from .backend import Array
from .check import check_choice

Measure = Literal["cka", "dcka", "procrustes"]
MEASURES: tuple[str, ...] = ("cka", "dcka", "procrustes")


def check_measure(measure: Any, *, debiased: bool) -> str:
    """Validate ``measure`` (and that ``debiased`` applies to it); return it."""
    check_choice(measure, "measure", MEASURES)
    if measure == "procrustes" and debiased:
        raise ValueError(
            "measure='procrustes' has no debiased form; pass debiased=False (the Procrustes "
            "similarity is not a ratio of HSIC estimates)"
        )
    return str(measure)


def check_confounder_given(measure: str, confounder: Any, what: str) -> None:
    """``measure="dcka"`` needs a confounder and the other measures refuse one."""
    if measure == "dcka" and confounder is None:
        raise ValueError(
            f"{what}: measure='dcka' needs the confounder (for example the flattened inputs) for "
            "the same examples; pass confounder=..."
        )
    if measure != "dcka" and confounder is not None:
        raise ValueError(
            f"{what}: a confounder is only used by measure='dcka'; got measure={measure!r}. "
            "Pass measure='dcka' or drop the confounder."
        )


def estimator_name(measure: str, debiased: bool) -> str:
    """The ``estimator`` label of a :class:`~cka_sim.CKAResult` of this measure."""
    base = {"cka": "linear", "dcka": "deconfounded", "procrustes": "procrustes"}[measure]
    return base + ("-debiased" if debiased else "")


def nuclear_norm(c: Array, xp: Any) -> Array:
    """Sum of the singular values of a float64 matrix."""
    return xp.sum(xp.linalg.svdvals(c))
