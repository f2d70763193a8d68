"""The networks of the layer-identification check: Tiny-10 (Kornblith et al. 2019) and an MLP.

Tiny-10: 3 x 3 convolutions of 16, 16, 32 (stride 2), 32, 32, 64 (stride 2), 64 (valid), a 1 x 1
convolution of 64, each followed by batch norm and ReLU, then global average pooling and the output
layer. The nine compared layers are the eight convolution blocks and the pooling (the output layer
is left out, as in the paper).
"""

from __future__ import annotations

import torch
from torch import nn

#: (out channels, kernel, stride, padding) of Tiny-10's eight convolutions.
TINY10_CONVS = (
    (16, 3, 1, 1),
    (16, 3, 1, 1),
    (32, 3, 2, 1),
    (32, 3, 1, 1),
    (32, 3, 1, 1),
    (64, 3, 2, 1),
    (64, 3, 1, 0),
    (64, 1, 1, 0),
)


class Tiny10(nn.Module):
    """Tiny-10 for ``channels``-channel images and ``classes`` outputs.

    Parameters
    ----------
    channels : int, default 1
        Input channels.
    classes : int, default 10
        Outputs of the final (not compared) linear layer.

    Attributes
    ----------
    layers : tuple of str
        Names of the nine compared modules, in depth order (``block1`` ... ``block8``, ``pool``).
    """

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        names = []
        previous = channels
        for index, (out, kernel, stride, padding) in enumerate(TINY10_CONVS, start=1):
            block = nn.Sequential(
                nn.Conv2d(previous, out, kernel, stride=stride, padding=padding, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            )
            self.add_module(f"block{index}", block)
            names.append(f"block{index}")
            previous = out
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.output = nn.Linear(previous, classes)
        self.layers = (*names, "pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.activations(x)[-1])

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the compared layers, in depth order, for images ``x``."""
        outputs = []
        for name in self.layers:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs


class MLP(nn.Module):
    """A ReLU MLP on flattened images: ``depth`` hidden layers of ``width`` units.

    Parameters
    ----------
    inputs : int
        Input features (pixels).
    width : int, default 256
        Units per hidden layer.
    depth : int, default 6
        Hidden layers, each compared.
    classes : int, default 10
        Outputs of the final (not compared) linear layer.

    Attributes
    ----------
    layers : tuple of str
        Names of the compared hidden layers (``hidden1`` ...), in depth order.
    """

    def __init__(self, inputs: int, width: int = 256, depth: int = 6, classes: int = 10) -> None:
        super().__init__()
        names = []
        previous = inputs
        for index in range(1, depth + 1):
            self.add_module(f"hidden{index}", nn.Sequential(nn.Linear(previous, width), nn.ReLU()))
            names.append(f"hidden{index}")
            previous = width
        self.output = nn.Linear(previous, classes)
        self.layers = tuple(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.activations(x)[-1])

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the compared layers, in depth order, for images ``x``."""
        outputs = []
        x = x.flatten(1)
        for name in self.layers:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs
