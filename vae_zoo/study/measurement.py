r"""Stage 2 on one evaluation set: every same-unit measure between every pair of models.

For each unit (layer, decode mode) the centred Gram of every model is computed once and kept
in float32; every measure (:data:`~vae_zoo.study.representations.MEASURES`) between all models,
on all examples and on each half, then comes from one product of the flattened Grams and their
row sums (:func:`~vae_zoo.study.representations.pair_values`, the closed form of the inner
products of normalised centred Grams of :func:`~vae_zoo.study.representations.unit_bank`,
which the label scores and the heatmap still use). Units are
processed in two chunks (encoder and mean-driven decoder units, then sample-driven decoder
units) so that at 1000 examples and 23 models the Grams held at once stay near 1.5 GB.

Outputs (one ``.npz`` per evaluation set):

- ``{measure}_full`` ``(M, M, U)`` and ``{measure}_halves`` ``(H, M, M, U)``: the measure between
  models ``a`` and ``b`` at unit ``u``, on all examples and on ``H`` random halves;
  ``deconfounded`` only at mean-driven units (NaN elsewhere);
- ``{measure}_labels`` ``(M, U)``: CKA of each unit with the one-hot labels (biased, debiased);
- ``{measure}_matched_floor_full`` ``(M, M, U)`` and ``{measure}_matched_floor_halves``
  ``(H, M, M, U)``, for ``measure`` in :data:`FLOOR_MEASURES`: the matched-input floor of the
  sample-driven units. Cell ``[m, r, u]`` (``m`` trained, ``r`` untrained) is the CKA at unit
  ``u`` between ``m``'s decoder driven by its own posterior sample
  :math:`z_m = \mu_m + \sigma_m \varepsilon` and ``r``'s decoder driven by the same
  :math:`z_m` (the same :math:`\varepsilon`); NaN at every other pair and unit. The plain
  floor pairs ``m`` on :math:`z_m` with ``r`` on its own sample :math:`z_r`, and an untrained
  encoder's means barely vary across images (SD about 0.001 against :math:`\sigma \approx 1`),
  so :math:`z_r` is pure noise and that floor is about 0: the matched floor asks instead how
  much of the decoder's similarity an untrained decoder reaches from the same input;
- ``own_init`` ``(M, U)``: debiased CKA of each trained model with its own initial weights (the
  shared-initialisation control; NaN for the untrained models and sample-driven units, and
  everywhere when the controls are left out);
- ``heatmap`` ``(K, V, K, V)``: debiased CKA between all mean-driven units of ``K`` models
  (``K = 0`` when no heatmap model is asked for);
- ``meta``: model ids, units, example count, heatmap models and units, and whether the
  matched floor was measured.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cka_sim import gram_linear

from .representations import (
    MEASURES,
    decoder_activations,
    model_activations,
    pair_values,
    unit_bank,
    unit_layers,
)

__all__ = ["FLOOR_MEASURES", "measure_evaluation_set", "with_matched_floor"]

#: Measures of the matched-input floor (sample-driven units only, so no deconfounded one).
FLOOR_MEASURES: tuple[str, ...] = ("debiased", "biased")


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
    initial: Callable[[str, int], torch.nn.Module] | None,
    heatmap_models: Sequence[str] = (),
    half_samples: int,
    seed: int,
    matched_floor: bool = True,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """All arrays of one evaluation set (see the module docstring).

    Parameters
    ----------
    models : dict
        Model id -> model; ids starting with ``"random/"`` are untrained baselines.
    images, labels : numpy.ndarray
        ``uint8`` images ``(n, c, h, w)`` and their labels.
    initial : callable or None
        ``initial(model_id, channels)``: the initial weights of a trained model; None leaves
        out the own-initialisation control (``own_init`` stays NaN).
    heatmap_models : sequence of str
        Models whose layer x layer CKA is kept (none: an empty heatmap).
    half_samples : int
        Random halves of the examples.
    seed : int
        Seed of the halves.
    matched_floor : bool
        Measure the matched-input floor of the sample-driven units (see the module docstring;
        one decoder pass per (trained, untrained) pair).
    device : str
    """
    ids = list(models)
    units = unit_layers()
    n = len(images)
    rng = np.random.default_rng(seed)
    halves = [np.sort(rng.choice(n, n // 2, replace=False)) for _ in range(half_samples)]
    out = _empty_arrays(labels, len(ids), len(units), half_samples, matched_floor)
    targets = _Targets(
        confounder=_input_gram(images),
        label_gram=_onehot_gram(labels),
        halves=halves,
        heat_rows=[ids.index(m) for m in heatmap_models],
        heat_units=[u for u in units if u[1] == "mean"] if heatmap_models else [],
    )
    heat_banks: dict[tuple[str, str], np.ndarray] = {}
    for chunk_mode in ("mean", "sample"):
        chunk = [u for u in units if u[1] == chunk_mode]
        stacks, latents = _chunk_grams(
            models, images, chunk, chunk_mode, initial, out["own_init"], device=device
        )
        for u in chunk:
            _measure_unit(stacks[u], u, units.index(u), targets, out, heat_banks)
        if matched_floor and chunk_mode == "sample":
            _matched_floor(models, latents, stacks, chunk, halves, out, device=device)
        del stacks, latents
    out["heatmap"] = _heatmap(heat_banks, targets.heat_units, len(targets.heat_rows))
    meta = {
        "models": ids,
        "units": [list(u) for u in units],
        "n_examples": n,
        "heatmap_models": list(heatmap_models),
        "heatmap_units": [list(u) for u in targets.heat_units],
        "matched_floor": bool(matched_floor),
        "own_init": initial is not None,
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
    labels: np.ndarray, n_models: int, n_units: int, half_samples: int, matched_floor: bool
) -> dict[str, np.ndarray]:
    """The output arrays, NaN until measured (see the module docstring)."""
    shape = (n_models, n_models, n_units)
    out: dict[str, np.ndarray] = {"labels": labels}
    keys = list(MEASURES)
    if matched_floor:
        keys += [f"{measure}_matched_floor" for measure in FLOOR_MEASURES]
    for key in keys:
        out[f"{key}_full"] = np.full(shape, np.nan)
        out[f"{key}_halves"] = np.full((half_samples, *shape), np.nan)
    for measure in ("debiased", "biased"):
        out[f"{measure}_labels"] = np.full((n_models, n_units), np.nan)
    out["own_init"] = np.full((n_models, n_units), np.nan)
    return out


def _chunk_grams(
    models: dict[str, torch.nn.Module],
    images: np.ndarray,
    chunk: list[tuple[str, str]],
    mode: str,
    initial: Callable[[str, int], torch.nn.Module] | None,
    own_init: np.ndarray,
    *,
    device: str,
) -> tuple[dict[tuple[str, str], np.ndarray], dict[int, np.ndarray]]:
    """The float32 centred Grams ``(M, n, n)`` of every model at each unit of ``chunk``, and
    each trained model's latent code ``{model index: (n, d)}`` under ``mode``.

    ``mode``: the decoder input of the chunk's units. At the mean-driven chunk, when
    ``initial`` is given, also fills ``own_init`` (models x all units): the debiased CKA of
    each trained model with its own initial weights.
    """
    ids = list(models)
    units = unit_layers()
    n = len(images)
    channels = int(images.shape[1])
    stacks = {u: np.empty((len(ids), n, n), dtype=np.float32) for u in chunk}
    latents: dict[int, np.ndarray] = {}
    for i, model_id in enumerate(ids):
        acts = model_activations(models[model_id], images, noise_seed=i, device=device)
        for u in chunk:
            stacks[u][i] = _gram32(acts[u])
        if model_id.startswith("random/"):
            del acts
            continue
        latents[i] = acts[("z", mode)]
        if mode == "mean" and initial is not None:
            init_acts = model_activations(initial(model_id, channels), images, device=device)
            for u in chunk:
                pair = np.stack([stacks[u][i], _gram32(init_acts[u])])
                bank = unit_bank(pair, "debiased")
                own_init[i, units.index(u)] = _pair_value(bank)
        del acts
    return stacks, latents


def _matched_floor(
    models: dict[str, torch.nn.Module],
    latents: dict[int, np.ndarray],
    stacks: dict[tuple[str, str], np.ndarray],
    chunk: list[tuple[str, str]],
    halves: list[np.ndarray],
    out: dict[str, np.ndarray],
    *,
    device: str,
) -> None:
    """Fill ``{measure}_matched_floor_*`` at the sample-driven units ``chunk``.

    For each trained model ``m`` (its code :math:`z_m` in ``latents``) and each untrained ``r``:
    ``r``'s decoder is driven by :math:`z_m` (:func:`decoder_activations`) and compared, unit
    by unit, with ``m``'s own Gram on :math:`z_m` (``stacks``), on all examples and each half.
    """
    ids = list(models)
    units = unit_layers()
    randoms = [j for j, m in enumerate(ids) if m.startswith("random/")]
    for i, z in latents.items():
        n = len(z)
        banks = {u: np.empty((len(randoms) + 1, n, n), dtype=np.float32) for u in chunk}
        for u in chunk:
            banks[u][0] = stacks[u][i]
        for k, j in enumerate(randoms, start=1):
            acts = decoder_activations(models[ids[j]], z, device=device)
            for u in chunk:
                banks[u][k] = _gram32(acts[u[0]])
        for u in chunk:
            col = units.index(u)
            for h, subset in enumerate([None, *halves]):
                for measure, values in _first_row_values(banks[u], subset).items():
                    key = f"{measure}_matched_floor"
                    if subset is None:
                        out[f"{key}_full"][i, randoms, col] = values
                    else:
                        out[f"{key}_halves"][h - 1, i, randoms, col] = values


def _first_row_values(grams: np.ndarray, subset: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every :data:`FLOOR_MEASURES` between the first Gram of ``grams`` ``(K, n, n)`` and each
    of the others, on the examples ``subset`` (None: all); NaN where a Gram is constant
    (:func:`~vae_zoo.study.representations.pair_values`)."""
    values = pair_values(grams, subset=subset)
    return {measure: values[measure][0, 1:] for measure in FLOOR_MEASURES}


def _measure_unit(
    stack: np.ndarray,
    unit: tuple[str, str],
    col: int,
    targets: _Targets,
    out: dict[str, np.ndarray],
    heat_banks: dict[tuple[str, str], np.ndarray],
) -> None:
    """Every measure at one unit (column ``col``): all examples and the halves (in closed form,
    :func:`~vae_zoo.study.representations.pair_values`; deconfounded at mean-driven units
    only), the labels, and the debiased bank of the heatmap's models at mean-driven units."""
    confounder = targets.confounder if unit[1] == "mean" else None
    for h, subset in enumerate([None, *targets.halves]):
        values = pair_values(stack, confounder=confounder, subset=subset)
        for measure, v in values.items():
            if subset is None:
                out[f"{measure}_full"][:, :, col] = v
            else:
                out[f"{measure}_halves"][h - 1, :, :, col] = v
    for measure in ("debiased", "biased"):
        bank = unit_bank(stack, measure)
        target = unit_bank(targets.label_gram[None], measure)[0]
        zero = ~np.any(bank != 0, axis=1)
        out[f"{measure}_labels"][:, col] = np.where(zero, np.nan, bank @ target)
        if measure == "debiased" and unit in targets.heat_units:
            heat_banks[unit] = bank[targets.heat_rows].astype(np.float32)


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


def with_matched_floor(data: Mapping[str, Any], measure: str = "debiased") -> dict[str, Any]:
    """One evaluation set's arrays read with the matched-input floor at the sample-driven units.

    A copy of ``data`` (the stage-2 arrays of :func:`measure_evaluation_set`, as loaded) whose
    ``{measure}_full`` and ``{measure}_halves`` hold, at every (trained, untrained) pair and
    every sample-driven unit, ``{measure}_matched_floor_*`` instead of the plain floor; the
    other pairs (same and cross-dataset) and units are unchanged. A reading of claims 1 and 2 on
    it has the matched floor as the random group of the sample-driven decoder.

    Raises
    ------
    KeyError
        When ``data`` has no matched floor of ``measure`` (measured with
        ``matched_floor=False``, or by a version of the study before it).
    """
    key = f"{measure}_matched_floor"
    if f"{key}_full" not in data:
        raise KeyError(
            f"the stage-2 arrays have no {key!r}: measure them again with the matched floor "
            "(delete the study's cka/ directory and resume)"
        )
    models = data["meta"]["models"]
    random = np.array([m.startswith("random/") for m in models])
    rows, cols = np.nonzero(~random[:, None] & random[None, :])
    units = np.array([u for u, (_, mode) in enumerate(data["meta"]["units"]) if mode == "sample"])
    out = dict(data)
    a, b, u = rows[:, None], cols[:, None], units[None, :]
    full = np.array(data[f"{measure}_full"], copy=True)
    full[a, b, u] = data[f"{key}_full"][a, b, u]
    halves = np.array(data[f"{measure}_halves"], copy=True)
    halves[:, a, b, u] = data[f"{key}_halves"][:, a, b, u]
    out[f"{measure}_full"], out[f"{measure}_halves"] = full, halves
    return out
