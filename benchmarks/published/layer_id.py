"""Layer identification (Kornblith et al. 2019, Table 2) from per-layer Grams.

For every ordered pair of different networks ``(a, b)`` and every layer ``l`` of ``a``, the check
is passed when the layer of ``b`` most similar to ``l`` is ``l`` itself. The accuracy is the share
of passed checks over all ``N (N - 1) L`` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np

from cka_sim import cka, deconfounded_cka_from_grams, gram_rbf, hsic, procrustes_similarity

#: RBF bandwidths (multiples of the median distance) of the check.
RBF_THRESHOLDS = (0.2, 0.4, 0.8)

#: Kornblith et al. (2019), Table 2 (CIFAR-10, Tiny-10): accuracy in percent where published.
PUBLISHED = {
    "linear CKA": 99.3,
    "RBF CKA 0.2": 80.6,
    "RBF CKA 0.4": 99.1,
    "RBF CKA 0.8": 99.3,
    "linear HSIC": 22.2,
    "CCA family (R², ρ̄, SVCCA, PWCCA)": "1.4-15.1",
}

Pair = Callable[[int, int, int, int], float]


def similarity_blocks(
    count: int, layers: int, pair: Pair, networks: list[tuple[int, int]] | None = None
) -> dict[tuple[int, int], np.ndarray]:
    """The ``layers x layers`` similarity block of every compared pair of networks.

    Parameters
    ----------
    count : int
        Number of networks.
    layers : int
        Layers per network.
    pair : callable
        ``pair(a, i, b, j)``: similarity of layer ``i`` of network ``a`` and layer ``j`` of ``b``
        (symmetric: ``pair(a, i, b, j) == pair(b, j, a, i)``).
    networks : list of (int, int), optional
        The unordered network pairs ``a < b`` to compare; default all of them.

    Returns
    -------
    dict
        ``(a, b) -> S`` with ``S[i, j] = pair(a, i, b, j)``, and ``(b, a) -> S.T``.
    """
    blocks = {}
    for a, b in networks if networks is not None else combinations(range(count), 2):
        block = np.array([[pair(a, i, b, j) for j in range(layers)] for i in range(layers)])
        blocks[a, b], blocks[b, a] = block, block.T
    return blocks


def identification(blocks: dict[tuple[int, int], np.ndarray]) -> dict[str, Any]:
    """Accuracy of layer identification over similarity blocks.

    Parameters
    ----------
    blocks : dict
        ``(a, b) -> S`` as from :func:`similarity_blocks`.

    Returns
    -------
    dict
        ``accuracy`` (share of rows whose largest entry is on the diagonal; a tie counts as a
        miss), ``checks`` (their number), ``per_layer`` (accuracy of each layer of ``a``).
    """
    hits = []
    for block in blocks.values():
        best = block.max(axis=1, keepdims=True)
        winners = block == best
        hits.append(np.diag(winners) & (winners.sum(axis=1) == 1))
    hits_array = np.array(hits)
    return {
        "accuracy": float(hits_array.mean()),
        "checks": int(hits_array.size),
        "per_layer": hits_array.mean(axis=0).tolist(),
    }


def measures(
    nets: list[dict[str, Any]], confounder: np.ndarray, procrustes_pairs: int | None = None
) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    """Similarity blocks of every measure of the check for networks from
    :func:`~benchmarks.published.training.train_all`.

    Parameters
    ----------
    nets : list of dict
        Per network: ``grams`` and ``embeddings`` of its layers.
    confounder : numpy.ndarray, shape (n, n)
        Gram of the inputs, adjusted for by dCKA (Cui et al. 2022).
    procrustes_pairs : int, optional
        Compare with Procrustes only network 0 with networks 1 ... ``procrustes_pairs`` (its cost
        is cubic in ``n`` per layer pair); default all pairs.

    Returns
    -------
    dict
        Measure name -> blocks.
    """
    grams = [net["grams"] for net in nets]
    count, layers = len(nets), len(grams[0])
    rbf = {
        t: [[np.asarray(gram_rbf(e, threshold=t)) for e in net["embeddings"]] for net in nets]
        for t in RBF_THRESHOLDS
    }
    pairs: dict[str, Pair] = {
        "linear CKA": lambda a, i, b, j: float(cka(grams[a][i], grams[b][j])),
        "debiased linear CKA": lambda a, i, b, j: float(
            cka(grams[a][i], grams[b][j], debiased=True)
        ),
        "linear HSIC": lambda a, i, b, j: float(hsic(grams[a][i], grams[b][j])),
        "dCKA": lambda a, i, b, j: float(
            deconfounded_cka_from_grams(grams[a][i], grams[b][j], confounder)
        ),
    }
    for t in RBF_THRESHOLDS:
        pairs[f"RBF CKA {t}"] = lambda a, i, b, j, g=rbf[t]: float(cka(g[a][i], g[b][j]))
    out = {name: similarity_blocks(count, layers, pair) for name, pair in pairs.items()}
    subset = None
    if procrustes_pairs is not None:
        subset = [(0, b) for b in range(1, min(count, procrustes_pairs + 1))]
    out["Procrustes"] = similarity_blocks(
        count,
        layers,
        lambda a, i, b, j: float(
            procrustes_similarity(nets[a]["embeddings"][i], nets[b]["embeddings"][j])
        ),
        subset,
    )
    return out
