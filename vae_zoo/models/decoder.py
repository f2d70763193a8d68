"""The decoder of :class:`~vae_zoo.models.ConvVAE`: two dense layers and four transposed
convolutions, a mirror of the encoder."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import _ReLUConvTranspose2d, _ReLULinear
from .config import ModelConfig


class Decoder(nn.Module):
    """The decoder, a mirror of the encoder: two dense layers and four transposed convolutions.

    Parameters
    ----------
    config : ModelConfig
        The architecture (channels, size, latent size).

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
    >>> from vae_zoo.models import Decoder, ModelConfig
    >>> Decoder(ModelConfig(size=32))(torch.zeros(2, 10)).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.side = config.feature_side
        self.dense1 = _ReLULinear(config.latent_dim, 256)
        self.dense2 = _ReLULinear(256, config.flat_features)
        self.deconv1 = _ReLUConvTranspose2d(64, 64, kernel_size=4, stride=2, padding=1)
        self.deconv2 = _ReLUConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1)
        self.deconv3 = _ReLUConvTranspose2d(32, 32, kernel_size=4, stride=2, padding=1)
        self.deconv4 = nn.ConvTranspose2d(32, config.channels, kernel_size=4, stride=2, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """Return the Bernoulli logits of the images generated from latent codes.

        Parameters
        ----------
        z : torch.Tensor, shape (n, d)
            Latent codes.

        Returns
        -------
        torch.Tensor, shape (n, c, s, s)
            Bernoulli logits.
        """
        h = self.dense2(self.dense1(z)).view(-1, 64, self.side, self.side)
        return self.deconv4(self.deconv3(self.deconv2(self.deconv1(h))))
