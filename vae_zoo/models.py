"""The paper's convolutional VAE (Burgess et al. 2018; Locatello et al. 2019; Bonheme & Grześ 2023).

Every layer that CKA compares is a real submodule with a stable name, so
``cka_sim.torch.record_activations(model, LAYER_NAMES)`` captures any of them by name. In the
paper's order:

=====================  =====================================  ==================  ==================
name                   module                                 output at 64 px     output at 32 px
=====================  =====================================  ==================  ==================
``input``              identity                               c x 64 x 64         c x 32 x 32
``encoder.conv1``      Conv 32, k4 s2 p1, ReLU                32 x 32 x 32        32 x 16 x 16
``encoder.conv2``      Conv 32, k4 s2 p1, ReLU                32 x 16 x 16        32 x 8 x 8
``encoder.conv3``      Conv 64, k4 s2 p1, ReLU                64 x 8 x 8          64 x 4 x 4
``encoder.conv4``      Conv 64, k4 s2 p1, ReLU                64 x 4 x 4          64 x 2 x 2
``encoder.dense``      Dense 256, ReLU (flat input)           256                 256
``encoder.mu``         Dense d (posterior mean)               d                   d
``encoder.logvar``     Dense d (posterior log-variance)       d                   d
``z``                  reparameterisation (sample or mean)    d                   d
``decoder.dense1``     Dense 256, ReLU                        256                 256
``decoder.dense2``     Dense 4·4·64 = 1024 (2·2·64 = 256),    1024                256
                       ReLU
``decoder.deconv1``    ConvT 64, k4 s2 p1, ReLU               64 x 8 x 8          64 x 4 x 4
``decoder.deconv2``    ConvT 32, k4 s2 p1, ReLU               32 x 16 x 16        32 x 8 x 8
``decoder.deconv3``    ConvT 32, k4 s2 p1, ReLU               32 x 32 x 32        32 x 16 x 16
``decoder.deconv4``    ConvT c, k4 s2 p1 (Bernoulli logits)   c x 64 x 64         c x 32 x 32
``output``             sigmoid (Bernoulli mean, an image)     c x 64 x 64         c x 32 x 32
=====================  =====================================  ==================  ==================

At 32 px the network is the same four stride-2 convolutions, so the last feature map is
2 x 2 x 64 = 256 values instead of 4 x 4 x 64 = 1024 and ``decoder.dense2`` has 256 units. The
hooked output of every ``conv``/``deconv``/``dense`` module is its post-activation value.

References
----------
C. P. Burgess et al., "Understanding disentangling in β-VAE", 2018.
F. Locatello et al., "Challenging common assumptions in the unsupervised learning of
disentangled representations", ICML 2019 (``disentanglement_lib`` conv architecture).
L. Bonheme and M. Grześ, "How good are variational autoencoders at transfer learning?", 2023.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice, check_positive_int

__all__ = [
    "DECODER_LAYERS",
    "ENCODER_LAYERS",
    "LATENT_LAYERS",
    "LAYER_NAMES",
    "SUPPORTED_SIZES",
    "ConvVAE",
    "DatasetMismatchError",
    "Decoder",
    "Encoder",
    "ModelConfig",
    "Reparameterize",
    "VAEOutput",
    "check_images_fit",
    "make_model",
]

SUPPORTED_SIZES = (32, 64)

ENCODER_LAYERS: tuple[str, ...] = (
    "input",
    "encoder.conv1",
    "encoder.conv2",
    "encoder.conv3",
    "encoder.conv4",
    "encoder.dense",
    "encoder.mu",
    "encoder.logvar",
)
"""Encoder-side layers, in forward order (``input`` included, as in the paper's figures)."""

LATENT_LAYERS: tuple[str, ...] = ("z",)
"""The latent code that drives the decoder (a sample, or the mean with ``decode_from="mean"``)."""

DECODER_LAYERS: tuple[str, ...] = (
    "decoder.dense1",
    "decoder.dense2",
    "decoder.deconv1",
    "decoder.deconv2",
    "decoder.deconv3",
    "decoder.deconv4",
    "output",
)
"""Decoder-side layers, in forward order (``output`` = sigmoid of ``decoder.deconv4``)."""

LAYER_NAMES: tuple[str, ...] = ENCODER_LAYERS + LATENT_LAYERS + DECODER_LAYERS
"""All compared layers in the paper's order: module names for ``record_activations``."""

DecodeFrom = Literal["sample", "mean"]
DECODE_FROM = ("sample", "mean")


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


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`ConvVAE`; two models with equal configs share parameter shapes.

    Parameters
    ----------
    channels : int, default 1
        Image channels ``c`` (1 for greyscale, 3 for colour).
    size : {32, 64}, default 64
        Image side in pixels.
    latent_dim : int, default 10
        Latent size ``d`` (the paper uses 10).

    Raises
    ------
    ValueError
        If ``size`` is not 32 or 64, or ``channels`` or ``latent_dim`` is not a positive integer.

    References
    ----------
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML (the ``disentanglement_lib`` convolutional VAE).

    Examples
    --------
    >>> from vae_zoo.models import ModelConfig
    >>> config = ModelConfig(channels=1, size=32)
    >>> config.flat_features, config.to_dict()
    (256, {'channels': 1, 'size': 32, 'latent_dim': 10})
    """

    channels: int = 1
    size: int = 64
    latent_dim: int = 10

    def __post_init__(self) -> None:
        if self.size not in SUPPORTED_SIZES:
            raise ValueError(
                f"ConvVAE supports image sizes {SUPPORTED_SIZES}, got size={self.size}: "
                "load the dataset with size=32 or size=64"
            )
        check_positive_int(self.channels, "channels")
        check_positive_int(self.latent_dim, "latent_dim")

    @property
    def feature_side(self) -> int:
        """Side of the last encoder feature map: ``size / 16`` (4 at 64 px, 2 at 32 px)."""
        return self.size // 16

    @property
    def flat_features(self) -> int:
        """Length of the flattened last feature map: ``64 · (size/16)²`` (1024 or 256)."""
        return 64 * self.feature_side**2

    def to_dict(self) -> dict[str, int]:
        """Return the configuration as a plain dict, for checkpoints and JSON.

        Returns
        -------
        dict
            ``{"channels": ..., "size": ..., "latent_dim": ...}``.
        """
        return asdict(self)

    def describe(self) -> str:
        """Return a short human-readable form, used in error messages.

        Returns
        -------
        str
            E.g. ``"ConvVAE(channels=1, size=64, latent_dim=10)"``.
        """
        return f"ConvVAE(channels={self.channels}, size={self.size}, latent_dim={self.latent_dim})"


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


class Encoder(nn.Module):
    """The encoder: four stride-2 convolutions, a dense layer, and the posterior heads.

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
    >>> from vae_zoo.models import Encoder, ModelConfig
    >>> mu, logvar = Encoder(ModelConfig(size=32))(torch.rand(2, 1, 32, 32))
    >>> mu.shape
    torch.Size([2, 10])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.channels
        self.conv1 = _ReLUConv2d(c, 32, kernel_size=4, stride=2, padding=1)
        self.conv2 = _ReLUConv2d(32, 32, kernel_size=4, stride=2, padding=1)
        self.conv3 = _ReLUConv2d(32, 64, kernel_size=4, stride=2, padding=1)
        self.conv4 = _ReLUConv2d(64, 64, kernel_size=4, stride=2, padding=1)
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


class Reparameterize(nn.Module):
    r"""The latent code ``z``: a reparameterised sample or the posterior mean.

    :math:`z = \mu + \exp(\log\sigma^2 / 2)\,\varepsilon` with
    :math:`\varepsilon \sim \mathcal N(0, I)`, or :math:`z = \mu`. A module of its own so that
    ``record_activations(model, ["z"])`` captures the code that actually drove the decoder.
    Called as ``module(mu, logvar, mode="sample", generator=None)``.

    Raises
    ------
    ValueError
        When called with a ``mode`` other than ``"sample"`` or ``"mean"``.

    References
    ----------
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR (the reparameterisation).

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import Reparameterize
    >>> mu = torch.ones(2, 3)
    >>> torch.equal(Reparameterize()(mu, torch.zeros(2, 3), mode="mean"), mu)
    True
    """

    def forward(
        self,
        mu: Tensor,
        logvar: Tensor,
        mode: DecodeFrom = "sample",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if mode == "mean":
            return mu
        check_choice(mode, "decode_from", DECODE_FROM)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps


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

    Raises
    ------
    ValueError
        If ``size`` is not 32 or 64, ``channels`` or ``latent_dim`` is not a positive integer, or
        ``decode_from`` is not one of the two choices.

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
    ) -> None:
        super().__init__()
        check_choice(decode_from, "decode_from", DECODE_FROM)
        self.config = ModelConfig(channels=channels, size=size, latent_dim=latent_dim)
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
            The architecture, e.g. from a checkpoint.
        **kwargs : Any
            Passed to the constructor (``decode_from``).

        Returns
        -------
        ConvVAE
            A freshly initialised model.
        """
        if isinstance(config, dict):
            config = ModelConfig(**config)
        return cls(config.channels, config.size, config.latent_dim, **kwargs)

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


class DatasetMismatchError(ValueError):
    """A dataset's images do not fit a model (channel count or size differs)."""


def check_images_fit(config: ModelConfig, channels: int, size: int, *, dataset: str = "") -> None:
    """Raise :class:`DatasetMismatchError` unless ``channels`` x ``size`` images fit ``config``.

    Parameters
    ----------
    config : ModelConfig
        The model's architecture.
    channels, size : int
        The dataset's image channels and side length (``ImageDataset.channels``/``.size``).
    dataset : str, default ""
        Dataset name for the message.

    Raises
    ------
    DatasetMismatchError
        If the channel count or the image size differs; the message says what to do.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767: transfer between datasets of the same image shape.

    Examples
    --------
    >>> from vae_zoo.models import ModelConfig, check_images_fit
    >>> check_images_fit(ModelConfig(channels=1, size=32), 1, 32, dataset="mnist")  # fits
    >>> check_images_fit(ModelConfig(channels=1, size=32), 3, 32, dataset="shapes3d")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    vae_zoo.models.DatasetMismatchError: dataset 'shapes3d' has 3-channel images ...
    """
    name = f"dataset {dataset!r}" if dataset else "the dataset"
    if channels != config.channels:
        raise DatasetMismatchError(
            f"{name} has {channels}-channel images but the model {config.describe()} takes "
            f"{config.channels}-channel images: transfer only between datasets with the same "
            "number of channels, or train a new model"
        )
    if size != config.size:
        raise DatasetMismatchError(
            f"{name} has {size} px images but the model {config.describe()} takes "
            f"{config.size} px images: load the dataset with size={config.size}"
        )


def make_model(
    channels: int = 1,
    size: int = 64,
    latent_dim: int = 10,
    *,
    seed: int | None = None,
    decode_from: DecodeFrom = "sample",
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

    Returns
    -------
    ConvVAE
        The model, in training mode.

    Raises
    ------
    ValueError
        For an unsupported size, a non-positive channel count or latent size, or an unknown
        ``decode_from``.

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
    if seed is None:
        return ConvVAE(channels, size, latent_dim, decode_from=decode_from)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvVAE(channels, size, latent_dim, decode_from=decode_from)
