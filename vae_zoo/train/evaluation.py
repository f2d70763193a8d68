"""The test loss: the mean loss terms of a model on a dataset, deterministic for a given seed."""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.base import ImageDataset
from ..models import ConvVAE
from ..objectives import Objective

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: ConvVAE,
    objective: Objective,
    data: ImageDataset,
    *,
    step: int = 0,
    dataset_size: int | None = None,
    max_examples: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Mean loss terms of ``model`` on (the first ``max_examples`` of) ``data``.

    Batches are consecutive, the sampling noise comes from a ``torch.Generator`` seeded with
    ``seed``, and the global RNGs are not touched: the same model gives the same numbers. Terms
    are averaged over examples (weighted by batch size).

    Parameters
    ----------
    model : ConvVAE
        The model; its training flag is restored afterwards.
    objective : Objective
        The loss terms to average.
    data : ImageDataset
        The images.
    step : int, default 0
        The training step, for the Annealed VAE's capacity.
    dataset_size : int, optional
        The ``N`` of the β-TCVAE estimator (default: ``len(data)``).
    max_examples : int, optional
        Use only the first this many images.
    batch_size : int, default 256
        Images per forward pass.
    seed : int, default 0
        Seed of the sampling noise.

    Returns
    -------
    dict
        Term name to its mean over the examples (``"loss"``, ``"recon"``, ``"kl"``, ...).

    Raises
    ------
    ValueError
        If the images do not fit the model (channels or size).

    References
    ----------
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR (the negative ELBO).

    Examples
    --------
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.objectives import BetaVAE
    >>> from vae_zoo.train import evaluate
    >>> data = load("dsprites", size=32, max_examples=16)
    >>> terms = evaluate(make_model(size=32, seed=0), BetaVAE(), data)
    >>> sorted(terms), terms == evaluate(make_model(size=32, seed=0), BetaVAE(), data)
    (['kl', 'loss', 'recon'], True)
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(data) if max_examples is None else min(len(data), max_examples)
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        batch = np.array(data.images[start : min(start + batch_size, n)])  # a writable copy
        x = torch.from_numpy(batch).to(device).float().div_(255.0)
        out = model(x, decode_from="sample", generator=generator)
        terms = objective(x, out, step=step, dataset_size=dataset_size or len(data))
        for key, value in terms.items():
            totals[key] = totals.get(key, 0.0) + float(value) * x.shape[0]
    model.train(was_training)
    return {key: total / n for key, total in totals.items()}
