"""The verdict rules of the study, fixed before any result is seen.

Every claim is decided from an estimate and its bootstrap interval by the rules below; nothing
else in the study writes a verdict. ``holds`` is True when the interval lies wholly on the side
the paper predicts, False when it lies wholly on the other side, and None (inconclusive) when it
straddles the threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Cross-dataset CKA must reach this fraction of same-dataset (other seed) CKA for the encoders
#: to count as generic, and must stay below it for the decoders to count as specific.
GENERIC_RATIO = 0.8


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
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


def encoders_generic(ratio: Interval, over_random: Interval, evidence: dict[str, Any]) -> Claim:
    """Claim 1: encoders' representations are generic.

    ``ratio``: mean cross-dataset encoder CKA / mean same-dataset (other seed) encoder CKA.
    ``over_random``: mean cross-dataset encoder CKA minus mean trained-vs-random encoder CKA.
    """
    criterion = (
        f"holds if the interval of (cross-dataset / same-dataset-other-seed) encoder CKA lies "
        f"above {GENERIC_RATIO} and cross-dataset CKA exceeds the trained-vs-random-init "
        f"baseline (interval of the difference above 0); fails if the ratio's interval lies below "
        f"{GENERIC_RATIO} or the difference's interval lies below 0; inconclusive otherwise"
    )
    holds = _decide(
        ratio.above(GENERIC_RATIO) and over_random.above(0.0),
        ratio.below(GENERIC_RATIO) or over_random.below(0.0),
    )
    return Claim(
        "encoders-generic",
        "Encoders learn generic representations: VAEs trained on different datasets have "
        "similar encoder representations of the same images.",
        holds,
        criterion,
        {
            "ratio_cross_over_same": ratio.to_dict(),
            "cross_minus_random": over_random.to_dict(),
            **evidence,
        },
    )


def decoders_specific(
    ratio: Interval, encoder_minus_decoder: Interval, evidence: dict[str, Any]
) -> Claim:
    """Claim 2: decoders' representations are specific.

    ``ratio``: mean cross-dataset decoder CKA / mean same-dataset (other seed) decoder CKA.
    ``encoder_minus_decoder``: the encoder ratio minus the decoder ratio.
    """
    criterion = (
        f"holds if the interval of (cross-dataset / same-dataset-other-seed) decoder CKA lies "
        f"below {GENERIC_RATIO} and the encoder ratio exceeds the decoder ratio (interval of the "
        f"difference above 0); fails if the decoder ratio's interval lies above {GENERIC_RATIO} or "
        "the difference's interval lies below 0; inconclusive otherwise"
    )
    holds = _decide(
        ratio.below(GENERIC_RATIO) and encoder_minus_decoder.above(0.0),
        ratio.above(GENERIC_RATIO) or encoder_minus_decoder.below(0.0),
    )
    return Claim(
        "decoders-specific",
        "Decoders learn dataset-specific representations: VAEs trained on different datasets "
        "have dissimilar decoder representations.",
        holds,
        criterion,
        {
            "ratio_cross_over_same": ratio.to_dict(),
            "encoder_ratio_minus_decoder_ratio": encoder_minus_decoder.to_dict(),
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
