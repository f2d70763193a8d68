"""Train the networks of the layer-identification check and reduce each layer to its Gram.

Each network trains in its own process on one thread (two processes side by side use two cores
best). A worker returns, per compared layer, the linear Gram of the activations of the evaluation
images (:func:`cka_sim.gram_linear`, float64) and an exact ``n x r`` embedding of it (the
eigenvectors scaled by the square roots of the eigenvalues), which has the same Gram and the same
pairwise distances, so every measure of the check can be computed from ``n x n`` arrays.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import Any

import numpy as np

from cka_sim import gram_linear


@dataclass(frozen=True)
class TrainSpec:
    """One network to train: architecture, seed and budget.

    Parameters
    ----------
    arch : {"tiny10", "mlp"}
        Which network (:mod:`benchmarks.published.nets`).
    seed : int
        Seed of the initialisation and of the batch order.
    steps : int
        Adam steps (learning rate 1e-3).
    batch : int
        Examples per step.
    """

    arch: str
    seed: int
    steps: int
    batch: int = 128


def embedding(gram: np.ndarray) -> np.ndarray:
    """An ``n x r`` matrix ``E`` with ``E @ E.T`` equal to the PSD ``gram`` (eigenvalues > 0 kept).

    Parameters
    ----------
    gram : numpy.ndarray, shape (n, n)
        A symmetric positive semi-definite Gram matrix.

    Returns
    -------
    numpy.ndarray, shape (n, r)
        Eigenvectors times the square roots of the eigenvalues above ``n * eps * max``.
    """
    values, vectors = np.linalg.eigh(gram)
    keep = values > gram.shape[0] * np.finfo(float).eps * max(values[-1], 0.0)
    return vectors[:, keep] * np.sqrt(values[keep])


def train_one(
    spec: TrainSpec,
    train: tuple[np.ndarray, np.ndarray],
    evaluation: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Train one network and return its test accuracy, output layer and per-layer Grams.

    Parameters
    ----------
    spec : TrainSpec
        What to train.
    train, evaluation : (images, labels)
        ``uint8`` images ``(N, 1, H, W)`` and ``int64`` labels.

    Returns
    -------
    dict
        ``accuracy`` (on the evaluation images), ``weight`` and ``bias`` of the output layer,
        ``layers`` (names), ``grams`` and ``embeddings`` (lists in layer order), ``pool``
        (the last compared layer's activations, float64).
    """
    import torch
    import torch.nn.functional as F

    from .nets import MLP, Tiny10

    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    images, labels = train
    shape = images.shape[1:]
    model = Tiny10(channels=shape[0]) if spec.arch == "tiny10" else MLP(int(np.prod(shape)))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(spec.seed).integers(0, len(images), (spec.steps, spec.batch))
    model.train()
    for rows in order:
        x = torch.from_numpy(images[rows]).float() / 255
        loss = F.cross_entropy(model(x), torch.from_numpy(labels[rows]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    x = torch.from_numpy(evaluation[0]).float() / 255
    with torch.no_grad():
        outputs = model.activations(x)
        logits = model.output(outputs[-1])
    acts = [out.flatten(1).double().numpy() for out in outputs]
    grams = [np.asarray(gram_linear(a)) for a in acts]
    return {
        "accuracy": float((logits.argmax(1).numpy() == evaluation[1]).mean()),
        "weight": model.output.weight.detach().double().numpy(),
        "bias": model.output.bias.detach().double().numpy(),
        "layers": list(model.layers),
        "grams": grams,
        "embeddings": [embedding(g) for g in grams],
        "pool": acts[-1],
    }


def _call(args: tuple[TrainSpec, Any, Any]) -> dict[str, Any]:
    return train_one(*args)


def train_all(
    specs: list[TrainSpec],
    train: tuple[np.ndarray, np.ndarray],
    evaluation: tuple[np.ndarray, np.ndarray],
    processes: int = 2,
) -> list[dict[str, Any]]:
    """:func:`train_one` for every spec, in ``processes`` single-thread processes (1: in this one).

    Parameters
    ----------
    specs : list of TrainSpec
        The networks.
    train, evaluation : (images, labels)
        As :func:`train_one`.
    processes : int, default 2
        Worker processes.

    Returns
    -------
    list of dict
        One :func:`train_one` result per spec, in order.
    """
    jobs = [(spec, train, evaluation) for spec in specs]
    if processes <= 1:
        return [_call(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(_call, jobs, chunksize=1)
