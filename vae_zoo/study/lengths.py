"""The training-length check: claims 1 and 2, G and the test loss at every training length.

The zoo keeps a checkpoint of every run at each step of ``training_lengths`` (the same runs, no
extra training), and the CKA stage measures the models of each length against each other and
against the same untrained models, on the same evaluation sets and halves
(:mod:`vae_zoo.study.stages.cka`). Here, per length: the mean test loss per dataset and its
change per doubling of steps, the encoder and decoder G with their model-level intervals (both
weightings, :func:`vae_zoo.study.analysis.layer_weighting`), the encoder − decoder difference
of G at each depth, and the verdicts of claims 1 and 2 under the same rules
(:func:`~vae_zoo.study.criteria.encoders_generic`,
:func:`~vae_zoo.study.criteria.decoders_specific`), read on the primary reading and on the
sample-driven decoder with the matched-input floor (the paper's setting). A line per claim and
reading says whether the verdict moves with training. ``results.json`` records it under
``training_length``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .analysis import cka_claims
from .config import StudyConfig
from .measurement import with_matched_floor
from .stages.cka import load_cka
from .stages.common import StudyContext

__all__ = [
    "LENGTH_READINGS",
    "length_evals",
    "loss_by_length",
    "training_length",
    "variant_key",
    "verdict_line",
]

#: Readings of claims 1 and 2 at every length: (measure, decoder input, floor) as in
#: :data:`vae_zoo.study.run.VARIANTS`; the primary one, and the paper's sample-driven decoder
#: with the matched-input floor.
LENGTH_READINGS: tuple[tuple[str, str, str], ...] = (
    ("debiased", "mean", "plain"),
    ("debiased", "sample", "matched"),
)

VERDICT = {True: "holds", False: "does not hold", None: "inconclusive"}


def variant_key(measure: str, mode: str, floor: str) -> str:
    """The name of a (measure, decoder input, floor) reading in ``results.json``, e.g.
    ``"biased/sample"`` or ``"debiased/sample-matched-floor"``."""
    return f"{measure}/{mode}" + ("-matched-floor" if floor == "matched" else "")


class _StudyLike(Protocol):
    config: StudyConfig
    context: StudyContext

    def model_records(self) -> list[dict[str, Any]]: ...


def length_evals(study: _StudyLike) -> dict[int, list[dict[str, Any]]]:
    """The stage-2 arrays of every evaluation set at every training length.

    Returns
    -------
    dict
        ``{length: [arrays of each dataset, in config.datasets order]}``, each in the format of
        ``run._load_eval`` (:func:`vae_zoo.study.stages.cka.load_cka`, its ``meta`` naming the
        ``dataset`` and the ``training_length``); the last length is the final checkpoints.
    """
    out: dict[int, list[dict[str, Any]]] = {}
    for length in study.config.training_lengths:
        evals = []
        for name in study.config.datasets:
            data = load_cka(study.context, name, length)
            data["meta"]["dataset"] = name
            data["meta"]["training_length"] = int(length)
            evals.append(data)
        out[int(length)] = evals
    return out


def _loss_at(record: Mapping[str, Any], length: int, final: int) -> float | None:
    """A model's test loss at ``length`` steps: its ``test_loss_at`` entry (str or int keys),
    or at the final length its ``final_test_loss``."""
    at = record.get("test_loss_at") or {}
    value = at.get(str(length), at.get(length))
    if value is None and length == final:
        value = record.get("final_test_loss")
    return None if value is None else float(value)


def loss_by_length(records: Sequence[Mapping[str, Any]], config: StudyConfig) -> dict[str, Any]:
    r"""Mean test loss of the zoo per dataset at every length, and its change per doubling.

    Between consecutive lengths :math:`L_1 < L_2` with mean losses :math:`\ell_1, \ell_2`, the
    change per doubling of steps is :math:`(\ell_2 - \ell_1) / \log_2(L_2 / L_1)` and the
    relative change per doubling :math:`(\ell_2 / \ell_1)^{1 / \log_2(L_2 / L_1)} - 1`.

    Parameters
    ----------
    records : sequence of mapping
        ``results.json``'s ``models``: ``dataset`` and ``test_loss_at`` (``{length: loss}``) of
        each zoo model; untrained ones (``dataset`` None) are skipped.
    config : StudyConfig
    """
    lengths = [int(n) for n in config.training_lengths]
    per_length: dict[str, dict[str, float | None]] = {}
    for length in lengths:
        row: dict[str, float | None] = {}
        for dataset in config.datasets:
            values = [
                _loss_at(r, length, config.train_steps) for r in records if r["dataset"] == dataset
            ]
            values = [v for v in values if v is not None]
            row[dataset] = float(np.mean(values)) if values else None
        per_length[str(length)] = row
    per_doubling: dict[str, dict[str, dict[str, float | None]]] = {}
    for short, long in itertools.pairwise(lengths):
        doublings = math.log2(long / short)
        row_d: dict[str, dict[str, float | None]] = {}
        for dataset in config.datasets:
            a, b = per_length[str(short)][dataset], per_length[str(long)][dataset]
            known = a is not None and b is not None and a > 0
            row_d[dataset] = {
                "change": (b - a) / doublings if known else None,
                "relative_change": (b / a) ** (1 / doublings) - 1 if known else None,
            }
        per_doubling[f"{short}->{long}"] = row_d
    return {
        "mean_test_loss": per_length,
        "per_doubling": per_doubling,
        "definition": (
            "mean over the zoo's seeds of each model's test loss (negative ELBO per image) at "
            "each training length; per doubling: (loss_long − loss_short) / log2(long / short), "
            "and relative: (loss_long / loss_short)^(1 / log2(long / short)) − 1"
        ),
    }


def _reading_at(
    evals: Sequence[Mapping[str, Any]], config: StudyConfig, measure: str, mode: str, floor: str
) -> dict[str, Any]:
    """Claims 1 and 2 of one reading at one length: G (both weightings), δ, the per-depth
    differences and the verdicts."""
    data = evals if floor == "plain" else [with_matched_floor(e, measure) for e in evals]
    claim1, claim2, extra = cka_claims(data, config, measure=measure, mode=mode)
    e1, e2 = claim1.evidence, claim2.evidence
    return {
        "encoder_G": e1["G"],
        "encoder_G_mean_of_layers": e1["G_mean_of_layers"],
        "encoder_margin": e1["margin"],
        "decoder_G": e2["G"],
        "decoder_G_mean_of_layers": e2["G_mean_of_layers"],
        "decoder_margin": e2["margin"],
        "encoder_G_minus_decoder_G": e2["encoder_G_minus_decoder_G"],
        "depth_differences": [
            {k: row[k] for k in ("depth", "encoder_layer", "decoder_layer", "difference")}
            for row in extra["depth"]
        ],
        "verdicts": {claim1.id: claim1.holds, claim2.id: claim2.holds},
    }


def verdict_line(claim: str, reading: str, verdicts: Mapping[int, bool | None]) -> str:
    """Whether a claim's verdict moves with training, in one line.

    ``verdicts``: ``{length: holds}`` in increasing length.
    """
    lengths = sorted(verdicts)
    values = [verdicts[n] for n in lengths]
    steps = ", ".join(str(n) for n in lengths)
    if all(v is values[0] for v in values):
        return f"{claim} ({reading}): {VERDICT[values[0]]} at every length ({steps} steps)"
    parts = ", ".join(f"{VERDICT[v]} at {n}" for n, v in zip(lengths, values, strict=True))
    return f"{claim} ({reading}): moves with training: {parts} steps"


def training_length(
    study: _StudyLike,
    evals_by_length: Mapping[int, Sequence[Mapping[str, Any]]],
    *,
    readings: Sequence[tuple[str, str, str]] = LENGTH_READINGS,
    records: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``results.json``'s ``training_length``: loss, G and verdicts of claims 1-2 per length.

    Parameters
    ----------
    study : Study
        Its ``config`` and ``model_records()`` (the models' ``test_loss_at``).
    evals_by_length : mapping
        ``{length: stage-2 arrays of each evaluation set}`` (:func:`length_evals`).
    readings : sequence of (str, str, str)
        (measure, decoder input, floor) readings of claims 1 and 2 (see
        :data:`LENGTH_READINGS`).
    records : sequence of mapping, optional
        The model records (default ``study.model_records()``).

    Returns
    -------
    dict
        ``lengths``; ``test_loss`` (:func:`loss_by_length`); ``readings``: per reading name
        (``measure/mode``, ``-matched-floor`` for the matched floor) ``per_length``
        (``{length: G, margins, differences, verdicts}``) and ``verdict_moves`` (one line per
        claim); ``summary``: every such line.
    """
    config = study.config
    lengths = sorted(int(n) for n in evals_by_length)
    out_readings: dict[str, Any] = {}
    summary = []
    for measure, mode, floor in readings:
        name = variant_key(measure, mode, floor)
        per_length = {
            str(n): _reading_at(evals_by_length[n], config, measure, mode, floor) for n in lengths
        }
        claims = list(per_length[str(lengths[-1])]["verdicts"])
        moves = {
            c: verdict_line(c, name, {n: per_length[str(n)]["verdicts"][c] for n in lengths})
            for c in claims
        }
        out_readings[name] = {"per_length": per_length, "verdict_moves": moves}
        summary += list(moves.values())
    return {
        "lengths": lengths,
        "test_loss": loss_by_length(
            records if records is not None else study.model_records(), config
        ),
        "readings": out_readings,
        "summary": summary,
    }
