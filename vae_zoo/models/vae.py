"""The VAE that holds the encoder, the latent code and the decoder (:class:`ConvVAE`), its
outputs (:class:`VAEOutput`) and the seeded builder (:func:`make_model`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._checks import check_choice
from .config import PAPER_ENCODER_KERNELS, ModelConfig
from .decoder import Decoder
from .encoder import Encoder
from .latent import DECODE_FROM, DecodeFrom, Reparameterize
from .names import LAYER_NAMES


class VAEOutput(NamedTuple):
    """The outputs of a forward pass of a :class:`ConvVAE`, as :meth:`ConvVAE.forward` returns.

    Parameters
    ----------
    logits : torch.Tensor
        Bernoulli logits of the reconstruction, ``(n, c, size, size)``.
    mu : torch.Tensor
        Posterior mean, ``(n, d)``.
    logvar : torch.Tensor
        Posterior log-variance, ``(n, d)``.
    z : torch.Tensor
        The latent code the decoder was driven with, ``(n, d)``.
    recon : torch.Tensor
        ``sigmoid(logits)``: the Bernoulli mean, an image in ``[0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import make_model
    >>> out = make_model(size=32, seed=0)(torch.rand(2, 1, 32, 32))
    >>> out.mu.shape, out.recon.shape
    (torch.Size([2, 10]), torch.Size([2, 1, 32, 32]))
    """

    logits: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor
    recon: Tensor


class ConvVAE(nn.Module):
    """The paper's convolutional VAE for ``size`` x ``size`` images with ``channels`` channels.

    Parameters
    ----------
    channels : int, default 1
        Image channels.
    size : {32, 64}, default 64
        Image side in pixels.
    latent_dim : int, default 10
        Latent size ``d``, 10 as in the paper.
    decode_from : {"sample", "mean"}, default "sample"
        Default latent code for :meth:`forward`: a reparameterised sample (what the paper used,
        also for its CKA) or the posterior mean (deterministic). Training always samples.
    encoder_kernels : sequence of 4 int, default (4, 4, 2, 2)
        Kernel sizes of ``encoder.conv1`` .. ``conv4`` (the paper's; see :class:`ModelConfig`).

    Raises
    ------
    ValueError
        If ``size`` is not 32 or 64, ``channels`` or ``latent_dim`` is not a positive integer,
        ``decode_from`` is not one of the two choices, or ``encoder_kernels`` is not four even
        integers of at least 2.

    Notes
    -----
    Modules are named as in :data:`LAYER_NAMES`; ``model.layer_names()`` returns them in order.
    Calling ``forward(x, generator=g)`` with a seeded ``torch.Generator`` makes sampled codes
    reproducible without touching the global RNG.

    References
    ----------
    Burgess et al. (2018), *Understanding disentangling in β-VAE*, arXiv:1804.03599.
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML. Bonheme & Grześ (2023), *How good are variational
    autoencoders at transfer learning?*, arXiv:2304.10767.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import ConvVAE
    >>> model = ConvVAE(channels=1, size=32, decode_from="mean")
    >>> out = model(torch.rand(4, 1, 32, 32))
    >>> out.logits.shape, model.layer_names()[:2]
    (torch.Size([4, 1, 32, 32]), ('input', 'encoder.conv1'))
    """

    def __init__(
        self,
        channels: int = 1,
        size: int = 64,
        latent_dim: int = 10,
        *,
        decode_from: DecodeFrom = "sample",
        encoder_kernels: Sequence[int] = PAPER_ENCODER_KERNELS,
    ) -> None:
        super().__init__()
        check_choice(decode_from, "decode_from", DECODE_FROM)
        self.config = ModelConfig(channels, size, latent_dim, tuple(encoder_kernels))
        self.decode_from: DecodeFrom = decode_from
        self.input = nn.Identity()
        self.encoder = Encoder(self.config)
        self.z = Reparameterize()
        self.decoder = Decoder(self.config)
        self.output = nn.Sigmoid()

    @classmethod
    def from_config(cls, config: ModelConfig | dict[str, Any], **kwargs: Any) -> ConvVAE:
        """Build a model from a :class:`ModelConfig` or its dict form.

        Parameters
        ----------
        config : ModelConfig or dict
            The architecture, e.g. from a checkpoint (a dict is read with
            :meth:`ModelConfig.from_dict`: without ``encoder_kernels`` it is an older
            checkpoint's ``(4, 4, 4, 4)``).
        **kwargs : Any
            Passed to the constructor (``decode_from``).

        Returns
        -------
        ConvVAE
            A freshly initialised model.
        """
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        return cls(
            config.channels,
            config.size,
            config.latent_dim,
            encoder_kernels=config.encoder_kernels,
            **kwargs,
        )

    @staticmethod
    def layer_names() -> tuple[str, ...]:
        """Return the names of the compared layers in the paper's order.

        Returns
        -------
        tuple of str
            :data:`LAYER_NAMES`.
        """
        return LAYER_NAMES

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the posterior mean and log-variance of a batch of images.

        Parameters
        ----------
        x : torch.Tensor, shape (n, c, size, size)
            Images, floats in ``[0, 1]``.

        Returns
        -------
        mu : torch.Tensor, shape (n, d)
            Posterior mean.
        logvar : torch.Tensor, shape (n, d)
            Posterior log-variance.
        """
        return self.encoder(self.input(x))

    def decode(self, z: Tensor) -> Tensor:
        """Return the Bernoulli logits of the images generated from latent codes.

        Parameters
        ----------
        z : torch.Tensor, shape (n, d)
            Latent codes.

        Returns
        -------
        torch.Tensor, shape (n, c, size, size)
            Bernoulli logits; ``torch.sigmoid`` of them is the image.
        """
        return self.decoder(z)

    def forward(
        self,
        x: Tensor,
        *,
        decode_from: DecodeFrom | None = None,
        generator: torch.Generator | None = None,
    ) -> VAEOutput:
        """Encode, draw ``z`` and decode.

        Parameters
        ----------
        x : Tensor
            Images ``(n, c, size, size)``, floats in ``[0, 1]``.
        decode_from : {"sample", "mean"}, optional
            Overrides the model's ``decode_from`` for this call.
        generator : torch.Generator, optional
            Source of the reparameterisation noise (default: the global torch RNG).

        Returns
        -------
        VAEOutput
            Logits, posterior mean and log-variance, the code and the reconstruction.
        """
        self._check_input(x)
        mu, logvar = self.encode(x)
        z = self.z(mu, logvar, decode_from or self.decode_from, generator)
        logits = self.decode(z)
        return VAEOutput(logits, mu, logvar, z, self.output(logits))

    def _check_input(self, x: Tensor) -> None:
        cfg = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.channels, cfg.size, cfg.size):
            raise ValueError(
                f"{cfg.describe()} expects images of shape (n, {cfg.channels}, {cfg.size}, "
                f"{cfg.size}), got {tuple(x.shape)}"
            )


def make_model(
    channels: int = 1,
    size: int = 64,
    latent_dim: int = 10,
    *,
    seed: int | None = None,
    decode_from: DecodeFrom = "sample",
    encoder_kernels: Sequence[int] = PAPER_ENCODER_KERNELS,
) -> ConvVAE:
    """Build a :class:`ConvVAE` with PyTorch's default initialisation, seeded if ``seed`` is given.

    The seed is used in a forked RNG scope, so the global torch RNG is left as it was. Two calls
    with the same arguments return models with identical parameters.

    Parameters
    ----------
    channels : int, default 1
        Image channels.
    size : {32, 64}, default 64
        Image side in pixels.
    latent_dim : int, default 10
        Latent size ``d``.
    seed : int, optional
        Seed of the initialisation; the global torch RNG draws it when omitted.
    decode_from : {"sample", "mean"}, default "sample"
        Default latent code of :meth:`ConvVAE.forward`.
    encoder_kernels : sequence of 4 int, default (4, 4, 2, 2)
        Kernel sizes of the four encoder convolutions (see :class:`ModelConfig`).

    Returns
    -------
    ConvVAE
        The model, in training mode.

    Raises
    ------
    ValueError
        For an unsupported size, a non-positive channel count or latent size, an unknown
        ``decode_from``, or invalid ``encoder_kernels``.

    References
    ----------
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML (the ``disentanglement_lib`` convolutional VAE).

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import make_model
    >>> a, b = make_model(size=32, seed=0), make_model(size=32, seed=0)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    kwargs: dict[str, Any] = {"decode_from": decode_from, "encoder_kernels": encoder_kernels}
    if seed is None:
        return ConvVAE(channels, size, latent_dim, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvVAE(channels, size, latent_dim, **kwargs)
