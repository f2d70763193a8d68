"""The architecture of a model (:class:`ModelConfig`) and the check that a dataset's images fit
it (:func:`check_images_fit`)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .._checks import check_positive_int

SUPPORTED_SIZES = (32, 64)
#: The encoder's kernel sizes in the paper: ``conv3`` and ``conv4`` use kernel 2 (Bonheme &
#: Grześ 2023, following Burgess et al. 2018).
PAPER_ENCODER_KERNELS = (4, 4, 2, 2)
#: The kernel sizes of a checkpoint written before :attr:`ModelConfig.encoder_kernels` existed:
#: every encoder convolution had kernel 4 then.
LEGACY_ENCODER_KERNELS = (4, 4, 4, 4)


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
    encoder_kernels : tuple of 4 int, default (4, 4, 2, 2)
        Kernel sizes ``k`` of ``encoder.conv1`` .. ``conv4`` (:data:`PAPER_ENCODER_KERNELS`).
        Each convolution has stride 2 and padding ``p = (k - 2) / 2``, so for every even ``k``
        its output side is ``(s + 2p - k) / 2 + 1 = s / 2``: the feature shapes do not depend
        on the kernels, the parameter counts do (``c_in · c_out · k² + c_out``).

    Raises
    ------
    ValueError
        If ``size`` is not 32 or 64, ``channels`` or ``latent_dim`` is not a positive integer,
        or ``encoder_kernels`` is not four even integers of at least 2.

    Notes
    -----
    A dict of a checkpoint written before ``encoder_kernels`` existed has no such key; read it
    with :meth:`from_dict`, which takes it as :data:`LEGACY_ENCODER_KERNELS` ``(4, 4, 4, 4)``,
    the architecture it was trained with.

    References
    ----------
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML (the ``disentanglement_lib`` convolutional VAE).

    Examples
    --------
    >>> from vae_zoo.models import ModelConfig
    >>> config = ModelConfig(channels=1, size=32)
    >>> config.flat_features, config.to_dict()
    (256, {'channels': 1, 'size': 32, 'latent_dim': 10, 'encoder_kernels': [4, 4, 2, 2]})
    >>> ModelConfig.from_dict({"channels": 1, "size": 32, "latent_dim": 10}).encoder_kernels
    (4, 4, 4, 4)
    """

    channels: int = 1
    size: int = 64
    latent_dim: int = 10
    encoder_kernels: tuple[int, int, int, int] = PAPER_ENCODER_KERNELS

    def __post_init__(self) -> None:
        if self.size not in SUPPORTED_SIZES:
            raise ValueError(
                f"ConvVAE supports image sizes {SUPPORTED_SIZES}, got size={self.size}: "
                "load the dataset with size=32 or size=64"
            )
        check_positive_int(self.channels, "channels")
        check_positive_int(self.latent_dim, "latent_dim")
        object.__setattr__(self, "encoder_kernels", _check_kernels(self.encoder_kernels))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build a config from its dict form, as a checkpoint or ``config.json`` stores it.

        Parameters
        ----------
        d : mapping
            ``channels``, ``size``, ``latent_dim`` and ``encoder_kernels``; without
            ``encoder_kernels`` (a checkpoint of an older version) the kernels are
            :data:`LEGACY_ENCODER_KERNELS`.

        Returns
        -------
        ModelConfig
            The validated config.

        Raises
        ------
        TypeError
            For an unknown key or a value of the wrong type.
        ValueError
            For an invalid value (see the class).
        """
        return cls(**{"encoder_kernels": LEGACY_ENCODER_KERNELS, **d})

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
            ``{"channels", "size", "latent_dim", "encoder_kernels"}``; the kernels as a list.
        """
        d = asdict(self)
        d["encoder_kernels"] = list(self.encoder_kernels)
        return d

    def describe(self) -> str:
        """Return a short human-readable form, used in error messages.

        Returns
        -------
        str
            E.g. ``"ConvVAE(channels=1, size=64, latent_dim=10, encoder_kernels=(4, 4, 2, 2))"``.
        """
        return (
            f"ConvVAE(channels={self.channels}, size={self.size}, latent_dim={self.latent_dim}, "
            f"encoder_kernels={self.encoder_kernels})"
        )


def _check_kernels(kernels: Any) -> tuple[int, int, int, int]:
    """``kernels`` as a tuple of four even integers >= 2, or a ValueError saying what is wrong."""
    values = tuple(kernels) if isinstance(kernels, list | tuple) else ()
    if len(values) != 4 or not all(
        isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 2 and k % 2 == 0
        for k in values
    ):
        raise ValueError(
            "encoder_kernels must be four even integers of at least 2 (one per encoder "
            f"convolution, e.g. {PAPER_ENCODER_KERNELS}); got {kernels!r}"
        )
    return tuple(int(k) for k in values)  # type: ignore[return-value]


def conv_padding(kernel: int) -> int:
    """Padding ``(k - 2) / 2`` of a stride-2 convolution of even kernel ``k``: it halves the side.

    Parameters
    ----------
    kernel : int
        An even kernel size ``k >= 2``.

    Returns
    -------
    int
        ``(k - 2) // 2``: 1 for ``k = 4``, 0 for ``k = 2``.

    Examples
    --------
    >>> from vae_zoo.models.config import conv_padding
    >>> conv_padding(4), conv_padding(2)
    (1, 0)
    """
    return (kernel - 2) // 2


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
    vae_zoo.models.config.DatasetMismatchError: dataset 'shapes3d' has 3-channel images ...
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
