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

import json
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cka_sim import gram_linear

from .representations import MEASURES, model_activations, unit_bank, unit_layers

__all__ = ["measure_evaluation_set"]


def _gram32(acts: np.ndarray) -> np.ndarray:
    return np.asarray(gram_linear(acts), dtype=np.float32)


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
    n_models, n = len(ids), len(images)
    units = unit_layers()
    rng = np.random.default_rng(seed)
    halves = [np.sort(rng.choice(n, n // 2, replace=False)) for _ in range(half_samples)]
    shape = (n_models, n_models, len(units))
    out: dict[str, np.ndarray] = {"labels": labels}
    for measure in MEASURES:
        out[f"{measure}_full"] = np.full(shape, np.nan)
        out[f"{measure}_halves"] = np.full((half_samples, *shape), np.nan)
    for measure in ("debiased", "biased"):
        out[f"{measure}_labels"] = np.full((n_models, len(units)), np.nan)
    out["own_init"] = np.full((n_models, len(units)), np.nan)
    confounder = np.asarray(
        gram_linear(images.reshape(n, -1).astype(np.float64) / 255), dtype=np.float64
    )
    label_gram = _onehot_gram(labels)
    heat_rows = [ids.index(m) for m in heatmap_models]
    heat_units = [u for u in units if u[1] == "mean"]
    heat_banks: dict[tuple[str, str], np.ndarray] = {}
    channels = int(images.shape[1])
    for chunk_mode in ("mean", "sample"):
        chunk = [u for u in units if u[1] == chunk_mode]
        stacks = {u: np.empty((n_models, n, n), dtype=np.float32) for u in chunk}
        for i, model_id in enumerate(ids):
            acts = model_activations(models[model_id], images, noise_seed=i, device=device)
            for u in chunk:
                stacks[u][i] = _gram32(acts[u])
            if chunk_mode == "mean" and not model_id.startswith("random/"):
                init_acts = model_activations(initial(model_id, channels), images, device=device)
                for u in chunk:
                    pair = np.stack([stacks[u][i], _gram32(init_acts[u])])
                    bank = unit_bank(pair, "debiased")
                    out["own_init"][i, units.index(u)] = _pair_value(bank)
            del acts
        for u in chunk:
            col = units.index(u)
            for measure in MEASURES:
                if measure == "deconfounded" and chunk_mode != "mean":
                    continue
                bank = unit_bank(stacks[u], measure, confounder=confounder)
                out[f"{measure}_full"][:, :, col] = _values(bank)
                if measure in ("debiased", "biased"):
                    target = unit_bank(label_gram[None], measure)[0]
                    zero = ~np.any(bank != 0, axis=1)
                    out[f"{measure}_labels"][:, col] = np.where(zero, np.nan, bank @ target)
                if measure == "debiased" and u in heat_units:
                    heat_banks[u] = bank[heat_rows].astype(np.float32)
                for h, subset in enumerate(halves):
                    sub = unit_bank(stacks[u], measure, confounder=confounder, subset=subset)
                    out[f"{measure}_halves"][h, :, :, col] = _values(sub)
        del stacks
    heat = np.full((len(heat_rows), len(heat_units), len(heat_rows), len(heat_units)), np.nan)
    for a, u in enumerate(heat_units):
        for b, v in enumerate(heat_units):
            heat[:, a, :, b] = _values_between(heat_banks[u], heat_banks[v])
    out["heatmap"] = heat
    meta = {
        "models": ids,
        "units": [list(u) for u in units],
        "n_examples": n,
        "heatmap_models": list(heatmap_models),
        "heatmap_units": [list(u) for u in heat_units],
    }
    out["meta"] = np.array(json.dumps(meta))
    return out


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
