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

#: Version of the rules; ``results.json`` records it. History: "1": thresholds on the
#: cross/same ratio at 0.8 (claim 1 could not fail when cross-dataset CKA sat at the floor);
#: "2": claims 1 and 2 on G with the seed-spread margin, decided at matched depth.
RULES_VERSION = "2"


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
        "inconclusive otherwise"
    )
    holds = _decide(g.low >= threshold, g.high < threshold)
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
        "1 − δ or the difference's interval lies below 0; inconclusive otherwise"
    )
    holds = _decide(
        g.high < threshold and encoder_minus_decoder.low > 0.0,
        g.low >= threshold or encoder_minus_decoder.high < 0.0,
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


def retrain_which(advantage: Interval, evidence: dict[str, Any]) -> Claim:
    """Claim 3: reuse the encoder and retrain the decoder.

    ``advantage``: mean over (source, target) pairs of (target test loss after the ``encoder``
    recipe − after the ``decoder`` recipe) / (after ``scratch``), at the full step budget.
    Positive means retraining the decoder (encoder frozen) transfers better.
    """
    criterion = (
        "holds if the interval of the mean relative advantage of retraining the decoder over "
        "retraining the encoder, (loss_encoder-recipe − loss_decoder-recipe) / loss_scratch at the "
        "full budget, lies above 0; fails if it lies below 0; inconclusive otherwise"
    )
    holds = _decide(advantage.above(0.0), advantage.below(0.0))
    return Claim(
        "retrain-which",
        "When transferring, reuse the encoder and retrain (parts of) the decoder.",
        holds,
        criterion,
        {"decoder_over_encoder_advantage": advantage.to_dict(), **evidence},
    )


def visual_transfer_check(rank_correlation: Interval, evidence: dict[str, Any]) -> Claim:
    """Claim 4: a visual check before transfer predicts whether it helps classification.

    ``rank_correlation``: Spearman correlation across (source, target, seed) between the
    visual score and the probe-accuracy gain of the source encoder over a random encoder.
    """
    criterion = (
        "holds if the interval of the Spearman rank correlation between the visual score (mean "
        "encoder CKA of the source model with the target-trained model on target images) and the "
        "linear-probe accuracy gain (source encoder − random encoder) lies above 0; fails if it "
        "lies below 0; inconclusive otherwise"
    )
    holds = _decide(rank_correlation.above(0.0), rank_correlation.below(0.0))
    return Claim(
        "visual-transfer-check",
        "A visual comparison of representations, made before transfer, tells whether transfer "
        "will help a classification task.",
        holds,
        criterion,
        {"spearman_score_vs_gain": rank_correlation.to_dict(), **evidence},
    )
