"""Stage 2 on one evaluation set: every same-unit measure between every pair of models.

For each unit (layer, decode mode) the centred Gram of every model is computed once and kept
in float32; each measure (:data:`~vae_zoo.study.representations.MEASURES`) is then one matrix
product of normalised Grams (:func:`~vae_zoo.study.representations.unit_bank`). Units are
processed in two chunks (encoder and mean-driven decoder units, then sample-driven decoder
units) so that at 1000 examples and 23 models the Grams held at once stay near 1.5 GB.

Outputs (one ``.npz`` per evaluation set):

- ``{measure}_full`` ``(M, M, U)`` and ``{measure}_halves`` ``(H, M, M, U)``: the measure between
  models ``a`` and ``b`` at unit ``u``, on all examples and on ``H`` random halves;
  ``deconfounded`` only at mean-driven units (NaN elsewhere);
- ``{measure}_labels`` ``(M, U)``: CKA of each unit with the one-hot labels (biased, debiased);
- ``own_init`` ``(M, U)``: debiased CKA of each trained model with its own initial weights (the
  shared-initialisation control; NaN for the untrained models and sample-driven units);
- ``heatmap`` ``(K, V, K, V)``: debiased CKA between all mean-driven units of ``K`` models;
- ``meta``: model ids, units, example count, heatmap models and units.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cka_sim import gram_linear

from .representations import MEASURES, model_activations, unit_bank, unit_layers

__all__ = ["measure_evaluation_set"]


def _gram32(acts: np.ndarray) -> np.ndarray:
    return np.asarray(gram_linear(acts), dtype=np.float32)


def _input_gram(images: np.ndarray) -> np.ndarray:
    """The Gram of the pixels (in [0, 1]): the confounder of the deconfounded measure."""
    flat = images.reshape(len(images), -1).astype(np.float64) / 255
    return np.asarray(gram_linear(flat), dtype=np.float64)


def _onehot_gram(labels: np.ndarray) -> np.ndarray:
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)
    return np.asarray(gram_linear(onehot), dtype=np.float64)


def measure_evaluation_set(
    models: dict[str, torch.nn.Module],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    initial: Callable[[str, int], torch.nn.Module],
    heatmap_models: Sequence[str],
    half_samples: int,
    seed: int,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """All arrays of one evaluation set (see the module docstring).

    Parameters
    ----------
    models : dict
        Model id -> model; ids starting with ``"random/"`` are untrained baselines.
    images, labels : numpy.ndarray
        ``uint8`` images ``(n, c, h, w)`` and their labels.
    initial : callable
        ``initial(model_id, channels)``: the initial weights of a trained model.
    heatmap_models : sequence of str
        Models whose layer x layer CKA is kept.
    half_samples : int
        Random halves of the examples.
    seed : int
        Seed of the halves.
    device : str
    """
    ids = list(models)
    units = unit_layers()
    n = len(images)
    rng = np.random.default_rng(seed)
    halves = [np.sort(rng.choice(n, n // 2, replace=False)) for _ in range(half_samples)]
    out = _empty_arrays(labels, len(ids), len(units), half_samples)
    targets = _Targets(
        confounder=_input_gram(images),
        label_gram=_onehot_gram(labels),
        halves=halves,
        heat_rows=[ids.index(m) for m in heatmap_models],
        heat_units=[u for u in units if u[1] == "mean"],
    )
    heat_banks: dict[tuple[str, str], np.ndarray] = {}
    for chunk_mode in ("mean", "sample"):
        chunk = [u for u in units if u[1] == chunk_mode]
        stacks = _chunk_grams(
            models, images, chunk, chunk_mode, initial, out["own_init"], device=device
        )
        for u in chunk:
            _measure_unit(stacks[u], u, units.index(u), targets, out, heat_banks)
        del stacks
    out["heatmap"] = _heatmap(heat_banks, targets.heat_units, len(targets.heat_rows))
    meta = {
        "models": ids,
        "units": [list(u) for u in units],
        "n_examples": n,
        "heatmap_models": list(heatmap_models),
        "heatmap_units": [list(u) for u in targets.heat_units],
    }
    out["meta"] = np.array(json.dumps(meta))
    return out


@dataclasses.dataclass(frozen=True)
class _Targets:
    """What every unit's banks are measured against: the confounder (the input's Gram), the
    labels' Gram, the random halves and the heatmap's models and units."""

    confounder: np.ndarray
    label_gram: np.ndarray
    halves: list[np.ndarray]
    heat_rows: list[int]
    heat_units: list[tuple[str, str]]


def _empty_arrays(
    labels: np.ndarray, n_models: int, n_units: int, half_samples: int
) -> dict[str, np.ndarray]:
    """The output arrays, NaN until measured (see the module docstring)."""
    shape = (n_models, n_models, n_units)
    out: dict[str, np.ndarray] = {"labels": labels}
    for measure in MEASURES:
        out[f"{measure}_full"] = np.full(shape, np.nan)
        out[f"{measure}_halves"] = np.full((half_samples, *shape), np.nan)
    for measure in ("debiased", "biased"):
        out[f"{measure}_labels"] = np.full((n_models, n_units), np.nan)
    out["own_init"] = np.full((n_models, n_units), np.nan)
    return out


def _chunk_grams(
    models: dict[str, torch.nn.Module],
    images: np.ndarray,
    chunk: list[tuple[str, str]],
    mode: str,
    initial: Callable[[str, int], torch.nn.Module],
    own_init: np.ndarray,
    *,
    device: str,
) -> dict[tuple[str, str], np.ndarray]:
    """The float32 centred Grams ``(M, n, n)`` of every model at each unit of ``chunk``.

    ``mode``: the decoder input of the chunk's units. At the mean-driven chunk, also fills ``own_init`` (models x all units): the debiased CKA of
    each trained model with its own initial weights.
    """
    ids = list(models)
    units = unit_layers()
    n = len(images)
    channels = int(images.shape[1])
    stacks = {u: np.empty((len(ids), n, n), dtype=np.float32) for u in chunk}
    for i, model_id in enumerate(ids):
        acts = model_activations(models[model_id], images, noise_seed=i, device=device)
        for u in chunk:
            stacks[u][i] = _gram32(acts[u])
        if mode == "mean" and not model_id.startswith("random/"):
            init_acts = model_activations(initial(model_id, channels), images, device=device)
            for u in chunk:
                pair = np.stack([stacks[u][i], _gram32(init_acts[u])])
                bank = unit_bank(pair, "debiased")
                own_init[i, units.index(u)] = _pair_value(bank)
        del acts
    return stacks


def _measure_unit(
    stack: np.ndarray,
    unit: tuple[str, str],
    col: int,
    targets: _Targets,
    out: dict[str, np.ndarray],
    heat_banks: dict[tuple[str, str], np.ndarray],
) -> None:
    """Every measure at one unit (column ``col``): all examples, the halves, the labels, and
    the debiased bank of the heatmap's models at mean-driven units."""
    for measure in MEASURES:
        if measure == "deconfounded" and unit[1] != "mean":
            continue
        bank = unit_bank(stack, measure, confounder=targets.confounder)
        out[f"{measure}_full"][:, :, col] = _values(bank)
        if measure in ("debiased", "biased"):
            target = unit_bank(targets.label_gram[None], measure)[0]
            zero = ~np.any(bank != 0, axis=1)
            out[f"{measure}_labels"][:, col] = np.where(zero, np.nan, bank @ target)
        if measure == "debiased" and unit in targets.heat_units:
            heat_banks[unit] = bank[targets.heat_rows].astype(np.float32)
        for h, subset in enumerate(targets.halves):
            sub = unit_bank(stack, measure, confounder=targets.confounder, subset=subset)
            out[f"{measure}_halves"][h, :, :, col] = _values(sub)


def _heatmap(
    heat_banks: dict[tuple[str, str], np.ndarray], heat_units: list[tuple[str, str]], rows: int
) -> np.ndarray:
    """Debiased CKA ``(K, V, K, V)`` between all mean-driven units of the heatmap's models."""
    heat = np.full((rows, len(heat_units), rows, len(heat_units)), np.nan)
    for a, u in enumerate(heat_units):
        for b, v in enumerate(heat_units):
            heat[:, a, :, b] = _values_between(heat_banks[u], heat_banks[v])
    return heat


def _values(bank: np.ndarray) -> np.ndarray:
    return _values_between(bank, bank)


def _values_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    values = np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T
    zero_a = ~np.any(a != 0, axis=1)
    zero_b = ~np.any(b != 0, axis=1)
    values[zero_a[:, None] | zero_b[None, :]] = np.nan
    return values


def _pair_value(bank: np.ndarray) -> float:
    return float(_values(bank)[0, 1])
