"""Layer activations of many models on the same images, and CKA between all of them.

Every model of the study sees the same held-out images of an evaluation dataset. For each model
and layer the centred linear Gram matrix is computed once (:func:`cka_sim.gram_linear`); CKA
between any two (model, layer) units is then an inner product of normalised centred Grams, so all
units are compared with one matrix product instead of one CKA call per pair:

.. math:: \\mathrm{CKA}(K, L) = \\Big\\langle \\frac{\\tilde K}{\\lVert \\tilde K\\rVert_F},
          \\frac{\\tilde L}{\\lVert \\tilde L\\rVert_F} \\Big\\rangle_F

with :math:`\\tilde K = HKH` (biased CKA) or the U-centred Gram (debiased CKA;
:func:`cka_sim.center_gram`). The tests check cells against :func:`cka_sim.linear_cka`.

Deconfounded CKA (Cui et al. 2022, :func:`cka_sim.deconfounded_cka_from_grams`) is computed the
same way: each centred Gram :math:`\\tilde K` is replaced by its residual after regressing it on the
centred Gram :math:`\\tilde K_Z` of the input images, :math:`R = \\tilde K - \\hat\\alpha \\tilde K_Z`
with :math:`\\hat\\alpha = \\langle \\tilde K, \\tilde K_Z\\rangle / \\lVert \\tilde K_Z\\rVert_F^2` (the
intercept is zero for centred Grams), and the residuals are U-centred and normalised. The tests
check cells against :func:`cka_sim.deconfounded_cka_from_grams`.

Half-samples: restricting the full-data centred Gram to a subset ``S`` of the examples and
centring it again gives exactly the centred Gram of ``S`` (both centrings remove the symmetric
row and column terms that the full-data centring left), so the example-level uncertainty needs
no new forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cka_sim import center_gram, gram_linear
from cka_sim.kernels import centered
from cka_sim.torch import record_activations

from ..models import DECODER_LAYERS, ENCODER_LAYERS, LATENT_LAYERS, ConvVAE

MEASURES: tuple[str, ...] = ("debiased", "biased", "deconfounded")
"""Same-unit measures of the study: debiased CKA (primary), biased CKA (the paper's), and
deconfounded debiased CKA (the input's similarity structure regressed out)."""

#: A residual Gram with a squared norm below this fraction of its Gram's is rounding noise (the
#: unit is a multiple of the input): deconfounded CKA is undefined there (NaN).
_RESIDUAL_TOLERANCE = 1e-6

DECODE_MODES: tuple[str, ...] = ("mean", "sample")
"""``mean``: the decoder is driven by the posterior mean (primary); ``sample``: by a sample, as
in the paper (adds noise to decoder CKA)."""


def unit_layers() -> list[tuple[str, str]]:
    """The (layer, decode mode) units of one model: encoder layers once, the rest per mode.

    Encoder activations do not depend on how the decoder is driven, so they are recorded once
    and labelled ``"mean"``.
    """
    units = [(layer, "mean") for layer in ENCODER_LAYERS]
    for mode in DECODE_MODES:
        units += [(layer, mode) for layer in LATENT_LAYERS + DECODER_LAYERS]
    return units


@torch.inference_mode()
def model_activations(
    model: ConvVAE,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    noise_seed: int = 0,
    device: str = "cpu",
) -> dict[tuple[str, str], np.ndarray]:
    """Flattened float32 activations of every unit of :func:`unit_layers` on ``images``.

    Parameters
    ----------
    model : ConvVAE
    images : numpy.ndarray
        ``uint8`` images ``(n, c, h, w)``.
    batch_size : int
    noise_seed : int
        Seed of the reparameterisation noise for the ``sample`` mode.
    device : str
    """
    model = model.to(device).eval()
    layers = ENCODER_LAYERS + LATENT_LAYERS + DECODER_LAYERS
    out: dict[tuple[str, str], list[np.ndarray]] = {unit: [] for unit in unit_layers()}
    generator = torch.Generator(device=device).manual_seed(noise_seed)
    with record_activations(model, layers) as store:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device).float() / 255
            for mode in DECODE_MODES:
                model(batch, decode_from=mode, generator=generator)
                for layer in layers:
                    unit = (layer, "mean" if layer in ENCODER_LAYERS else mode)
                    if layer in ENCODER_LAYERS and mode != "mean":
                        continue
                    out[unit].append(store[layer].flatten(1).float().cpu().numpy())
    return {unit: np.concatenate(parts) for unit, parts in out.items()}


@torch.inference_mode()
def decoder_activations(
    model: ConvVAE, latents: np.ndarray, *, batch_size: int = 256, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Flattened float32 activations of the decoder side of ``model`` driven by given codes.

    The decoder of ``model`` is fed ``latents`` in place of its own code: ``z`` is ``latents``
    itself, then every layer of :data:`~vae_zoo.models.DECODER_LAYERS` (``output`` is the
    sigmoid of the logits). The study's matched-input floor drives an untrained decoder with a
    trained model's own latent sample this way (:mod:`vae_zoo.study.measurement`).

    Parameters
    ----------
    model : ConvVAE
    latents : numpy.ndarray, shape (n, latent_dim)
        The codes that drive the decoder.
    batch_size : int
    device : str

    Returns
    -------
    dict
        Layer name (``"z"`` and the decoder layers) -> ``(n, features)`` float32 array.
    """
    if latents.ndim != 2 or latents.shape[1] != model.config.latent_dim:
        raise ValueError(
            f"latents must have shape (n, {model.config.latent_dim}); got {latents.shape}"
        )
    model = model.to(device).eval()
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in LATENT_LAYERS + DECODER_LAYERS}
    with record_activations(model, DECODER_LAYERS) as store:
        for start in range(0, len(latents), batch_size):
            z = torch.from_numpy(np.asarray(latents[start : start + batch_size])).to(device)
            model.output(model.decode(z.float()))
            out[LATENT_LAYERS[0]].append(z.float().cpu().numpy())
            for layer in DECODER_LAYERS:
                out[layer].append(store[layer].flatten(1).float().cpu().numpy())
    return {layer: np.concatenate(parts) for layer, parts in out.items()}


def centred_grams(
    activations: dict[tuple[str, str], np.ndarray],
) -> dict[tuple[str, str], np.ndarray]:
    """Biased-centred float64 Gram matrix ``HKH`` of every unit."""
    return {
        unit: np.asarray(gram_linear(acts), dtype=np.float64) for unit, acts in activations.items()
    }


def _normalised(gram: np.ndarray, debiased: bool) -> np.ndarray:
    """Centre (U-centre when ``debiased``) and scale to unit Frobenius norm, flattened.

    A zero centred Gram (a constant layer) stays zero, so its CKA with anything is NaN-free 0;
    :func:`cka_units` marks those units and returns NaN for them.
    """
    centred = np.asarray(center_gram(gram, unbiased=debiased), dtype=np.float64)
    norm = np.sqrt(np.sum(centred * centred))
    return (centred / norm if norm > 0 else centred).ravel()


@dataclass
class UnitCKA:
    """CKA between all (model, layer, mode) units on one evaluation dataset.

    Attributes
    ----------
    models : list of str
        Model ids.
    units : list of (str, str)
        (layer, mode) of each model, in :func:`unit_layers` order.
    values : numpy.ndarray, shape (M, U, M, U)
        ``values[a, u, b, v]`` is the CKA of unit ``u`` of model ``a`` and unit ``v`` of ``b``.
    """

    models: list[str]
    units: list[tuple[str, str]]
    values: np.ndarray

    def unit_index(self, layer: str, mode: str = "mean") -> int:
        """Index of ``layer`` under decode ``mode`` (encoder layers exist under ``"mean"`` only)."""
        key = (layer, "mean" if layer in ENCODER_LAYERS else mode)
        return self.units.index(key)


def cka_units(
    grams: Sequence[dict[tuple[str, str], np.ndarray]],
    *,
    debiased: bool,
    subset: np.ndarray | None = None,
    same_unit_only: bool = False,
) -> np.ndarray:
    """CKA between all units of all models from their centred Grams.

    Parameters
    ----------
    grams : sequence of dict
        One :func:`centred_grams` mapping per model, all over the same examples and units.
    debiased : bool
        Debiased (U-centred) or biased CKA.
    subset : numpy.ndarray, optional
        Example indices: compute CKA on these examples only (a half-sample).
    same_unit_only : bool
        Only compare each unit with the same unit of the other models: returns ``(M, M, U)``
        instead of ``(M, U, M, U)``; much cheaper.

    Returns
    -------
    numpy.ndarray
        NaN where a unit's centred Gram is zero (CKA undefined).
    """
    units = list(grams[0])
    n_models = len(grams)
    rows = []
    for per_model in grams:
        stack = []
        for unit in units:
            gram = per_model[unit]
            if subset is not None:
                gram = gram[np.ix_(subset, subset)]
            stack.append(_normalised(gram, debiased))
        rows.append(np.stack(stack))  # (U, n²)
    bank = np.stack(rows)  # (M, U, n²)
    zero = ~np.any(bank != 0, axis=2)  # (M, U) constant units
    if same_unit_only:
        values = np.stack([bank[:, u] @ bank[:, u].T for u in range(len(units))], axis=2)
        values[zero[:, None, :] | zero[None, :, :]] = np.nan
        return values
    flat = bank.reshape(n_models * len(units), -1)
    values = (flat @ flat.T).reshape(n_models, len(units), n_models, len(units))
    values[zero[:, :, None, None] | zero[None, None, :, :]] = np.nan
    return values


def label_cka(
    grams: dict[tuple[str, str], np.ndarray], labels: np.ndarray, *, debiased: bool
) -> dict[tuple[str, str], float]:
    """CKA of every unit with the one-hot labels of the same examples."""
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)
    target = _normalised(np.asarray(gram_linear(onehot), dtype=np.float64), debiased)
    return {
        unit: float(_normalised(gram, debiased) @ target) if np.any(gram) else float("nan")
        for unit, gram in grams.items()
    }


def _centred(gram: np.ndarray, subset: np.ndarray | None) -> np.ndarray:
    gram = np.asarray(gram, dtype=np.float64)
    if subset is not None:
        gram = gram[np.ix_(subset, subset)]
    return np.asarray(center_gram(gram, unbiased=False), dtype=np.float64)


def unit_bank(
    grams: np.ndarray,
    measure: str,
    *,
    confounder: np.ndarray | None = None,
    subset: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised, flattened Grams of one unit of every model, for one measure.

    Parameters
    ----------
    grams : numpy.ndarray, shape (M, n, n)
        Centred linear Gram of the unit for each of ``M`` models (any float dtype).
    measure : {"debiased", "biased", "deconfounded"}
        See :data:`MEASURES`.
    confounder : numpy.ndarray, shape (n, n), optional
        Centred Gram of the input images (needed for ``"deconfounded"``).
    subset : numpy.ndarray, optional
        Example indices (a half-sample): the Grams are restricted and centred again.

    Returns
    -------
    numpy.ndarray, shape (M, n'^2)
        Rows of unit Frobenius norm; a row of zeros where the measure is undefined (constant
        unit, or nothing left after deconfounding). ``bank @ bank.T`` is the measure between
        all models.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}; got {measure!r}")
    if measure == "deconfounded" and confounder is None:
        raise ValueError("measure 'deconfounded' needs the confounder's Gram")
    grams = np.asarray(grams)
    if grams.ndim != 3 or grams.shape[1] != grams.shape[2]:
        raise ValueError(f"grams must have shape (M, n, n); got {grams.shape}")
    if not np.isfinite(grams).all():
        raise ValueError("grams has NaN or infinite values")
    # the whole stack at once: restrict, centre HKH, (deconfound), centre again, normalise
    k = grams if subset is None else grams[:, subset][:, :, subset]
    k = centered(np.array(k, dtype=np.float64), np, unbiased=False, overwrite=True)
    if measure == "deconfounded":
        z = _centred(confounder, subset)
        kk = np.einsum("kij,kij->k", k, k)
        k -= (np.einsum("kij,ij->k", k, z) / float(np.sum(z * z)))[:, None, None] * z
        left = np.einsum("kij,kij->k", k, k)
        k[left <= _RESIDUAL_TOLERANCE * kk] = 0.0
    k = centered(k, np, unbiased=measure != "biased", overwrite=True)
    flat = k.reshape(len(k), -1)
    norms = np.sqrt(np.einsum("ki,ki->k", flat, flat))
    flat /= np.where(norms > 0, norms, 1.0)[:, None]
    return flat


#: A Gram whose centred squared norm is at most this fraction of its squared norm is a
#: constant unit up to rounding: :func:`pair_values` leaves its measures undefined (NaN).
_CONSTANT_TOLERANCE = 1e-12


def pair_values(
    grams: np.ndarray,
    *,
    confounder: np.ndarray | None = None,
    subset: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""Every measure between all models at one unit, in closed form from the Grams' sums.

        The same values as ``unit_bank(grams, measure) @ unit_bank(grams, measure).T`` (to about
        1e-12; ``tests/test_study_floor.py`` checks both), without centring each Gram: one product
        of the flattened Grams and their row sums. With :math:`n` examples kept,
        :math:`r_a = K_a \mathbf 1`, :math:`t_a = \mathbf 1^	op K_a \mathbf 1`:

        - biased: :math:`\langle HK_aH, HK_bH
    angle = \langle K_a, K_b
    angle
          - 	frac2n r_a^	op r_b + t_a t_b / n^2`;
        - debiased, the U-centred inner product (Song et al. 2012), with :math:`ar K` the Gram
          with a zero diagonal and :math:`ar r, ar t` its sums:
          :math:`\langle ar K_a, ar K_b
    angle + ar t_a ar t_b / ((n-1)(n-2))
          - 	frac{2}{n-2} ar r_a^	op ar r_b`;
        - deconfounded: the residual :math:`R_a = HK_aH - lpha_a HZH`,
          :math:`lpha_a = \langle HK_aH, HZH
    angle / \lVert HZH
    Vert^2`, U-centred: U-centring
          is linear and ignores the double centring, so
          :math:`\langle 	ilde R_a, 	ilde R_b
    angle = U_{ab} - lpha_b U_{az} - lpha_a U_{zb}
          + lpha_a lpha_b U_{zz}` from the debiased inner products :math:`U` with the
          confounder :math:`Z` as one more Gram. A residual with at most ``_RESIDUAL_TOLERANCE``
          of its Gram's squared norm left is undefined, as in :func:`unit_bank`.

        Each measure is the inner product over the square root of the two self inner products.

        Parameters
        ----------
        grams : numpy.ndarray, shape (M, n, n)
            Centred linear Gram of the unit for each model.
        confounder : numpy.ndarray, shape (n, n), optional
            Gram of the input images: also returns ``"deconfounded"``.
        subset : numpy.ndarray, optional
            Example indices (a half-sample).

        Returns
        -------
        dict
            ``{measure: (M, M)}`` for ``debiased``, ``biased`` (and ``deconfounded``); NaN where a
            Gram is constant (or nothing is left after deconfounding).
    """
    k = grams if subset is None else grams[:, subset][:, :, subset]
    k = np.array(k, dtype=np.float64)
    if confounder is not None:
        z = confounder if subset is None else confounder[np.ix_(subset, subset)]
        k = np.concatenate([k, np.asarray(z, dtype=np.float64)[None]])
    n = k.shape[-1]
    flat = k.reshape(len(k), -1)
    products = flat @ flat.T
    rows = k.sum(axis=2)
    total = rows.sum(axis=1)
    biased = products - (2 / n) * (rows @ rows.T) + np.outer(total, total) / n**2
    diag = np.einsum("kii->ki", k)
    rows_u, total_u = rows - diag, total - diag.sum(axis=1)
    unbiased = (
        products
        - diag @ diag.T
        + np.outer(total_u, total_u) / ((n - 1) * (n - 2))
        - (2 / (n - 2)) * (rows_u @ rows_u.T)
    )
    constant = np.diagonal(biased) <= _CONSTANT_TOLERANCE * np.diagonal(products)
    inners = {"debiased": unbiased, "biased": biased}
    undefined = dict.fromkeys(inners, constant)
    if confounder is not None:
        inners, undefined = _with_deconfounded(biased, unbiased, constant)
    out = {}
    for key, inner in inners.items():
        norm = np.where(undefined[key], np.nan, np.sqrt(np.maximum(np.diagonal(inner), 0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = inner / np.outer(norm, norm)
    return out


def _with_deconfounded(
    biased: np.ndarray, unbiased: np.ndarray, constant: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The inner products of :func:`pair_values` whose last row is the confounder: those of the
    models, and of their deconfounded residuals; with the undefined models of each measure."""
    m = len(biased) - 1
    alpha = biased[:m, m] / biased[m, m]
    left = np.diagonal(biased)[:m] - alpha * biased[:m, m]
    u = unbiased
    inners = {"debiased": u[:m, :m], "biased": biased[:m, :m]}
    inners["deconfounded"] = (
        u[:m, :m]
        - alpha[None, :] * u[:m, m][:, None]
        - alpha[:, None] * u[m, :m][None, :]
        + np.outer(alpha, alpha) * u[m, m]
    )
    gone = constant[:m] | (left <= _RESIDUAL_TOLERANCE * np.diagonal(biased)[:m])
    undefined = {"debiased": constant[:m], "biased": constant[:m], "deconfounded": gone}
    return inners, undefined
