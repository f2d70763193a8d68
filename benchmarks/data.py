"""Synthetic activations, models and loaders for the suite (deterministic, made on the fly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import DataLoader

# The 10 recorded layers of the CNN of the compare_models case.
CNN_LAYERS = [
    "conv1",
    "relu1",
    "conv2",
    "relu2",
    "conv3",
    "relu3",
    "conv4",
    "relu4",
    "conv5",
    "fc",
]


def activations(n: int, p: int, *, mean: float = 10.0, seed: int = 0, device: str = "cpu") -> Any:
    """Two related float32 torch activations (n, p) with feature means around ``mean``.

    ``x`` is Gaussian; ``y`` is a ReLU of a random mixing of ``x`` plus noise, so their CKA is
    well inside (0, 1). Generated in chunks of rows, so the peak is the output itself.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(p, p, generator=gen) / float(np.sqrt(p))
    x = torch.empty(n, p, device=device)
    y = torch.empty(n, p, device=device)
    step = 8192
    for start in range(0, n, step):
        rows = min(step, n - start)
        xb = torch.randn(rows, p, generator=gen)
        yb = torch.relu(xb @ mix) + torch.randn(rows, p, generator=gen)
        x[start : start + rows] = xb + mean
        y[start : start + rows] = yb + mean
    return x, y


def build_cnn(seed: int) -> nn.Module:
    """A 10-layer CNN for 3x32x32 inputs; separate ReLU modules, none in place."""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.relu2 = nn.ReLU()
            self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
            self.relu3 = nn.ReLU()
            self.conv4 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.relu4 = nn.ReLU()
            self.conv5 = nn.Conv2d(64, 64, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu1(self.conv1(x))
            x = self.relu2(self.conv2(x))
            x = self.relu3(self.conv3(x))
            x = self.relu4(self.conv4(x))
            x = self.pool(torch.relu(self.conv5(x))).flatten(1)
            return self.fc(x)

    torch.manual_seed(seed)
    return SmallCNN().eval()


def build_loader(n: int, batch_size: int) -> DataLoader:
    """Structured images (8x8 noise upsampled to 32x32, plus pixel noise) with labels."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(n, 3, 8, 8, generator=g)
    images = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    images += 0.1 * torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False)


def debiased_cka_float64(x: np.ndarray, y: np.ndarray) -> float:
    """Reference debiased linear CKA in float64 from U-centred n x n Grams (the textbook form).

    Independent of ``cka_sim``'s code: used as the truth of the accuracy column (n up to a few
    thousand).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = x.shape[0]

    def u_centre(k: np.ndarray) -> np.ndarray:
        k = k.copy()
        np.fill_diagonal(k, 0.0)
        means = k.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        k -= means[:, None] + means[None, :]
        np.fill_diagonal(k, 0.0)
        return k

    k, l = u_centre(x @ x.T), u_centre(y @ y.T)
    return float((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()))
