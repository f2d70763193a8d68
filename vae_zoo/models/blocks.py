"""Layers followed by their ReLU, so that a forward hook on the named module sees the activation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class _ReLUConv2d(nn.Conv2d):
    """``Conv2d`` followed by ReLU, so a forward hook on it sees the activation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


class _ReLUConvTranspose2d(nn.ConvTranspose2d):
    """``ConvTranspose2d`` followed by ReLU, so a forward hook on it sees the activation."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.relu(super().forward(x))


class _ReLULinear(nn.Linear):
    """``Linear`` followed by ReLU, so a forward hook on it sees the activation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))
