"""The verdict rules of the study, fixed in code before the run and versioned.

Every claim is decided from an estimate and its bootstrap interval by the rules below; nothing
else in the study writes a verdict. ``holds`` is True when the interval lies wholly on the side
the paper predicts, False when it lies wholly on the other side, and None (inconclusive) when it
straddles the threshold. ``results.json`` records :data:`RULES_VERSION`; a change to any rule
changes the version, and results of different versions are not comparable.

Claims 1 and 2 (version 2) are read on the normalised index
G = (cross − random) / (same − random) (see :mod:`vae_zoo.study.analysis`): 1 is the ceiling
(two seeds of one dataset), 0 the floor (a trained against an untrained model). Their
equivalence margin ``delta`` is not a hand-picked number: it is the seed-to-seed spread, twice
the standard deviation of the same-dataset pairs' CKA (the half-width of the range that holds
about 95 % of same-dataset pairs) over the ceiling-to-floor distance
(:func:`vae_zoo.study.analysis.seed_margin`). "As similar as the same dataset" means G within
``delta`` of 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Version of the rules; ``results.json`` records it. History: "1": thresholds on the
#: cross/same ratio at 0.8 (claim 1 could not fail when cross-dataset CKA sat at the floor);
#: "2": claims 1 and 2 on G with the seed-spread margin, decided at matched depth; "3": claim 3
#: as the freeze-depth question (does the fall of G predict the best freeze depth?) and claim 4
#: on real transfer, analysed within targets with a permutation test; "4": claim 3 as a graded
#: test over every ordered pair (a rank correlation, unresolved blocks passed over), the paper's
#: recipe against scratch as its own line, claim 4 on means over source seeds with an exact
#: permutation p-value.
RULES_VERSION = "4"

#: Claim 3: a block's pair-level G at or above this value counts as "still similar"; the
#: predicted freeze depth is the number of leading encoder blocks that are.
G_FALL = 0.5
#: Claim 3: a block is unresolved on a target, and passed over by the prediction (counted as
#: reusable: there trained and untrained models agree alike), when its span same − random is
#: below this much debiased CKA, or the seeds of the target spread over the span (δ ≥ 1).
MIN_SPAN = 0.02
#: Claim 3: holds when the rank correlation between predicted and best depth is at least this.
RHO_MIN = 0.3
#: Claim 3: the tie band is this many pooled seed standard deviations of a recipe's relative
#: target loss; pairs whose two best depths differ by less are reported as inside it.
TIE_SDS = 2.0
#: Claim 4: the primary visual score (pre-registered) and the secondary one.
PRIMARY_VISUAL_SCORE = "profile"
SECONDARY_VISUAL_SCORE = "label"
#: Claims 3 and 4: one-sided significance level of the within-target permutation tests.
PERMUTATION_ALPHA = 0.05
#: Permutation nulls with at most this many within-target combinations are enumerated exactly
#: (5 targets x 4 sources: 24**5, about 8 million); larger ones are drawn at random.
EXACT_LIMIT = 10**8
#: Random permutations of a null too large to enumerate (its p-value's standard error is stated).
MONTE_CARLO_DRAWS = 99_999


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"interval low {self.low} is above high {self.high}")

    def above(self, threshold: float) -> bool:
        """The whole interval is above ``threshold``."""
        return self.low > threshold

    def below(self, threshold: float) -> bool:
        """The whole interval is below ``threshold``."""
        return self.high < threshold

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper with our verdict."""

    id: str
    statement: str
    holds: bool | None
    criterion: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decide(supports: bool, refutes: bool) -> bool | None:
    if supports and not refutes:
        return True
    if refutes and not supports:
        return False
    return None


def encoders_generic(g: Interval, margin: float, evidence: dict[str, Any]) -> Claim:
    """Claim 1: encoders' representations are generic.

    Parameters
    ----------
    g : Interval
        G of the encoder layers (cross-dataset CKA normalised between the untrained floor, 0,
        and the same-dataset ceiling, 1).
    margin : float
        The equivalence margin ``delta`` (seed-to-seed spread on the G scale).

    Holds when the whole interval of G lies within ``delta`` of the ceiling
    (``low >= 1 - delta``); fails when it lies wholly below ``1 - delta``: cross-dataset encoders
    are measurably less alike than two seeds of one dataset, which includes the case that
    matters most, G near 0 (no more alike than a trained and an untrained model).
    """
    threshold = 1.0 - margin
    criterion = (
        "G = (cross − random) / (same − random) over the encoder layers; holds if its interval "
        f"lies at or above 1 − δ = {threshold:.3f} (δ = {margin:.3f}, the seed-to-seed spread on "
        "the G scale): cross-dataset encoders as alike as two seeds of one dataset; fails if the "
        "interval lies below 1 − δ (including G near 0: no more alike than an untrained model); "
        "inconclusive otherwise, and whenever δ ≥ 1 (the seeds spread over the whole range "
        "from floor to ceiling, so the scale cannot tell them apart)"
    )
    resolvable = bool(margin < 1.0)
    holds = _decide(resolvable and g.low >= threshold, resolvable and g.high < threshold)
    return Claim(
        "encoders-generic",
        "Encoders learn generic representations: VAEs trained on different datasets have "
        "similar encoder representations of the same images.",
        holds,
        criterion,
        {"G": g.to_dict(), "margin": margin, "rules_version": RULES_VERSION, **evidence},
    )


def decoders_specific(
    g: Interval, margin: float, encoder_minus_decoder: Interval, evidence: dict[str, Any]
) -> Claim:
    """Claim 2: decoders' representations are specific.

    Parameters
    ----------
    g : Interval
        G of the decoder layers.
    margin : float
        The decoder's equivalence margin ``delta``.
    encoder_minus_decoder : Interval
        G of the encoder layers minus G of the decoder layers at matched depth (same scale).

    Holds when the decoder's G lies wholly below ``1 - delta`` and the encoder's G exceeds it
    (difference above 0); fails when the decoder's G lies within ``delta`` of the ceiling or the
    decoder is more generic than the encoder (difference below 0).
    """
    threshold = 1.0 - margin
    criterion = (
        "G over the decoder layers, and encoder G − decoder G at matched depth; holds if the "
        f"decoder G interval lies below 1 − δ = {threshold:.3f} (δ = {margin:.3f}) and the "
        "difference's interval lies above 0; fails if the decoder G interval lies at or above "
        "1 − δ or the difference's interval lies below 0; inconclusive otherwise (when δ ≥ 1 the "
        "G scale cannot resolve the decoder, and only the difference can fail the claim)"
    )
    resolvable = bool(margin < 1.0)
    holds = _decide(
        resolvable and g.high < threshold and encoder_minus_decoder.low > 0.0,
        (resolvable and g.low >= threshold) or encoder_minus_decoder.high < 0.0,
    )
    return Claim(
        "decoders-specific",
        "Decoders learn dataset-specific representations: VAEs trained on different datasets "
        "have dissimilar decoder representations.",
        holds,
        criterion,
        {
            "G": g.to_dict(),
            "margin": margin,
            "encoder_G_minus_decoder_G": encoder_minus_decoder.to_dict(),
            "rules_version": RULES_VERSION,
            **evidence,
        },
    )


def retrain_which(rho: float, pvalue: float, evidence: dict[str, Any]) -> Claim:
    """Claim 3: reuse the encoder as deep as it stays generic, retrain the rest.

    Parameters
    ----------
    rho : float
        Spearman correlation, over every ordered (source, target) pair with a prediction,
        between the predicted freeze depth (leading encoder blocks whose pair-level G is at
        least :data:`G_FALL`, unresolved blocks passed over, see :data:`MIN_SPAN`) and the best
        depth (the freeze depth of lowest target test loss at the graded test's budget). NaN
        when either side is constant.
    pvalue : float
        One-sided p-value of ``rho`` when the best depths are permuted among the sources of each
        target (exact where :data:`EXACT_LIMIT` allows).

    Holds when ``rho >= RHO_MIN`` with ``pvalue <= PERMUTATION_ALPHA``; fails when
    ``rho <= 0`` (deeper similarity does not go with deeper reuse); inconclusive otherwise,
    including an undefined ``rho``.
    """
    criterion = (
        "Spearman ρ over every ordered (source, target) pair between the freeze depth G "
        f"predicts (leading encoder blocks with pair-level G ≥ {G_FALL}; blocks whose span "
        f"same − random is below {MIN_SPAN} or whose seed margin δ ≥ 1 are passed over) and the "
        "best freeze depth (0-5, lowest target test loss at the graded budget); holds if "
        f"ρ ≥ {RHO_MIN} and its one-sided within-target permutation p ≤ {PERMUTATION_ALPHA}; "
        "fails if ρ ≤ 0; inconclusive otherwise (and when ρ is undefined)"
    )
    defined = bool(np.isfinite(rho))
    holds = _decide(
        defined and rho >= RHO_MIN and pvalue <= PERMUTATION_ALPHA, defined and rho <= 0
    )
    return Claim(
        "retrain-which",
        "When transferring, reuse the encoder and retrain (parts of) the decoder; the depth "
        "at which the representations stop being similar tells how much to reuse.",
        holds,
        criterion,
        {"rho": rho, "pvalue": pvalue, "rules_version": RULES_VERSION, **evidence},
    )


def paper_recipe(gain: Interval, evidence: dict[str, Any]) -> Claim:
    """The paper's recipe against scratch at the graded budget, as its own pre-registered line.

    Parameters
    ----------
    gain : Interval
        Mean over ordered pairs of (loss_scratch − loss_paper) / loss_scratch, the target test
        loss at the graded test's budget against the mean of the target's scratch models; the
        interval resamples targets (and their scratch models), the units the pairs share.

    Holds when the interval lies above 0 (the recipe beats scratch), fails when it lies below 0,
    inconclusive otherwise.
    """
    criterion = (
        "mean over ordered pairs of the relative target-loss gain of the paper's recipe "
        "(re-initialise μ, log σ² and the decoder's first layer, freeze the rest) over scratch at "
        "the same budget; holds if its interval (targets resampled) lies above 0, fails if it "
        "lies below 0, inconclusive otherwise"
    )
    return Claim(
        "paper-recipe",
        "The paper's transfer recipe beats training from scratch on a data-scarce target.",
        _decide(gain.low > 0.0, gain.high < 0.0),
        criterion,
        {"gain": gain.to_dict(), "rules_version": RULES_VERSION, **evidence},
    )


def visual_transfer_check(rho: float, pvalue: float, evidence: dict[str, Any]) -> Claim:
    """Claim 4: a visual check before transfer predicts whether transfer helps classification.

    Parameters
    ----------
    rho : float
        Mean over targets of the within-target Spearman correlation between the primary visual
        score (:data:`PRIMARY_VISUAL_SCORE`) and the gain of real transfer (probe accuracy of the
        transferred and fine-tuned model minus the mean of scratch models at the same budget),
        both averaged over the source seeds of each (source, target).
    pvalue : float
        One-sided p-value of ``rho`` under a permutation test that permutes sources within
        targets, exact where :data:`EXACT_LIMIT` allows.

    Holds when ``rho > 0`` with ``pvalue <= PERMUTATION_ALPHA``; fails when ``rho <= 0`` (the
    score ranks sources no better than chance, or backwards); inconclusive otherwise.
    """
    criterion = (
        "mean over targets of the within-target Spearman ρ between the visual score and the "
        "probe-accuracy gain of real transfer over scratch (each a mean over source seeds); "
        "holds if ρ > 0 and the one-sided permutation p-value (sources permuted within targets, "
        f"exact where enumerable) is at most {PERMUTATION_ALPHA}; "
        "fails if ρ ≤ 0; inconclusive otherwise"
    )
    holds = _decide(bool(rho > 0 and pvalue <= PERMUTATION_ALPHA), bool(rho <= 0))
    return Claim(
        "visual-transfer-check",
        "A visual comparison of representations, made before transfer, tells whether transfer "
        "will help a classification task.",
        holds,
        criterion,
        {"rho_within_targets": rho, "pvalue": pvalue, "rules_version": RULES_VERSION, **evidence},
    )
