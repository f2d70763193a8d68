"""The architecture of a model (:class:`ModelConfig`) and the check that a dataset's images fit
it (:func:`check_images_fit`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .._checks import check_positive_int

SUPPORTED_SIZES = (32, 64)


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
