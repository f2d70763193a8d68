"""Linear probes: how well a VAE encoder's posterior mean separates a dataset's classes."""

from __future__ import annotations

import numpy as np
import torch

from ..datasets import ImageDataset
from ..models import ConvVAE


@torch.inference_mode()
def posterior_means(
    model: ConvVAE, images: np.ndarray, *, batch_size: int = 512, device: str = "cpu"
) -> np.ndarray:
    """The encoder's posterior mean ``mu`` of ``uint8`` images, as float64 ``(n, d)``."""
    model = model.to(device).eval()
    parts = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.asarray(images[start : start + batch_size])).to(device)
        mu, _ = model.encode(batch.float() / 255)
        parts.append(mu.double().cpu().numpy())
    return np.concatenate(parts)


def probe_accuracy(
    model: ConvVAE,
    train: ImageDataset,
    test: ImageDataset,
    *,
    train_indices: np.ndarray,
    test_indices: np.ndarray,
    device: str = "cpu",
) -> float:
    """Test accuracy of a logistic-regression probe on the encoder's posterior mean.

    The probe (standardised features, L2-regularised multinomial logistic regression from
    scikit-learn) is fitted on ``train[train_indices]`` and scored on ``test[test_indices]``
    (the study draws both as stratified samples, :mod:`vae_zoo.study.sampling`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train.labels is None or test.labels is None:
        raise ValueError(f"dataset {train.name!r} has no labels; a probe needs class labels")
    tr, te = np.sort(train_indices), np.sort(test_indices)
    x_train = posterior_means(model, train.images[tr], device=device)
    x_test = posterior_means(model, test.images[te], device=device)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(x_train, train.labels[tr])
    return float(probe.score(x_test, test.labels[te]))
