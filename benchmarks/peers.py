"""Peer CKA libraries the suite compares against, each behind one small adapter.

A peer that cannot be imported is reported as unavailable with the reason; its cells are skipped.
Each adapter calls the peer's own public function on torch tensors on the suite's device and
returns a Python float (or a NumPy matrix), nothing else: the timed work is the peer's.

Estimators, for like-for-like comparisons:

- pytorch-cka 1.1.3 computes the unbiased HSIC₁ of Song et al. (2012) from float32 Grams of the
  uncentred features, always (``cka_from_features`` for a pair of activations, ``compute_cka`` for
  models over a loader: Nguyen et al.'s minibatch estimator), and clamps the result to [0, 1].
- ckatorch 1.0.3 ``cka_base`` casts to float64 and forms n x n Grams, biased or unbiased
  (``unbiased=``), linear or RBF (Kornblith's median rule, lower median).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

INSTALL_HINT = (
    "install the pinned peers with "
    "`pip install --no-deps -c benchmarks/constraints.txt -r benchmarks/requirements.txt`"
)


@dataclass(frozen=True)
class Peer:
    """One peer library: its name, version, and why it is unavailable (None when it imports)."""

    name: str
    module: str
    version: str | None
    missing: str | None

    @property
    def available(self) -> bool:
        return self.missing is None


def find_peer(name: str, module: str) -> Peer:
    """Import ``module`` and describe the peer ``name`` (never raises)."""
    try:
        mod = importlib.import_module(module)
    except Exception as error:  # any import failure makes the peer a skipped column
        return Peer(name, module, None, f"{name} not importable ({error}); {INSTALL_HINT}")
    version = getattr(mod, "__version__", None)
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            version = dist_version(name)
        except PackageNotFoundError:
            version = "unknown"
    return Peer(name, module, str(version), None)


def peers() -> dict[str, Peer]:
    """The peers of the suite, keyed by name."""
    return {
        "pytorch-cka": find_peer("pytorch-cka", "cka"),
        "ckatorch": find_peer("ckatorch", "ckatorch"),
    }


def linear_debiased(name: str) -> Callable[[Any, Any], float]:
    """The peer's debiased (HSIC₁) linear CKA of two (n, p) torch tensors."""
    if name == "pytorch-cka":
        from cka import cka_from_features

        return lambda x, y: float(cka_from_features(x, y).reshape(()))
    if name == "ckatorch":
        from ckatorch import cka_base

        return lambda x, y: float(cka_base(x, y, kernel="linear", unbiased=True))
    raise ValueError(f"no linear adapter for {name!r}")


def rbf_biased(name: str, threshold: float) -> Callable[[Any, Any], float]:
    """The peer's biased RBF CKA (Kornblith's median bandwidth) of two (n, p) torch tensors."""
    if name == "ckatorch":
        from ckatorch import cka_base

        return lambda x, y: float(cka_base(x, y, kernel="rbf", threshold=threshold))
    raise ValueError(f"no RBF adapter for {name!r}")


def compare_models(
    name: str, model_a: Any, model_b: Any, loader: Any, layers: list[str], device: str
) -> np.ndarray:
    """The peer's minibatch CKA matrix of ``layers`` of two models over ``loader``."""
    if name == "pytorch-cka":
        from cka import compute_cka

        matrices = compute_cka(
            model_a,
            model_b,
            loader,
            layers=layers,
            model2_layers=layers,
            device=device,
            progress=False,
        )
        return matrices[0].double().cpu().numpy()
    raise ValueError(f"no compare_models adapter for {name!r}")
