"""The encoder of :class:`~vae_zoo.models.ConvVAE`: four stride-2 convolutions, a dense layer
and the posterior heads."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import _ReLUConv2d, _ReLULinear
from .config import ModelConfig, conv_padding


class Encoder(nn.Module):
    """The encoder: four stride-2 convolutions, a dense layer, and the posterior heads.

    Parameters
    ----------
    config : ModelConfig
        The architecture (channels, size, latent size, and the kernel size ``k`` of each
        convolution: stride 2, padding ``(k - 2) / 2``, so each halves the side).

    Raises
    ------
    RuntimeError
        From torch, when called on a batch whose shape does not fit ``config``.

    References
    ----------
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML (the ``disentanglement_lib`` convolutional VAE).

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import Encoder, ModelConfig
    >>> mu, logvar = Encoder(ModelConfig(size=32))(torch.rand(2, 1, 32, 32))
    >>> mu.shape
    torch.Size([2, 10])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        k1, k2, k3, k4 = config.encoder_kernels
        c = config.channels
        self.conv1 = _ReLUConv2d(c, 32, kernel_size=k1, stride=2, padding=conv_padding(k1))
        self.conv2 = _ReLUConv2d(32, 32, kernel_size=k2, stride=2, padding=conv_padding(k2))
        self.conv3 = _ReLUConv2d(32, 64, kernel_size=k3, stride=2, padding=conv_padding(k3))
        self.conv4 = _ReLUConv2d(64, 64, kernel_size=k4, stride=2, padding=conv_padding(k4))
        self.dense = _ReLULinear(config.flat_features, 256)
        self.mu = nn.Linear(256, config.latent_dim)
        self.logvar = nn.Linear(256, config.latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the posterior mean and log-variance of a batch of images.

        Parameters
        ----------
        x : torch.Tensor, shape (n, c, s, s)
            Images, floats in ``[0, 1]``.

        Returns
        -------
        mu : torch.Tensor, shape (n, d)
            Posterior mean.
        logvar : torch.Tensor, shape (n, d)
            Posterior log-variance.
        """
        h = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        h = self.dense(h.flatten(1))
        return self.mu(h), self.logvar(h)
