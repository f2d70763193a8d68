"""Small records shared by the dataset sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Availability(NamedTuple):
    """Whether a dataset loads on this machine, as :func:`vae_zoo.datasets.available` tells.

    Parameters
    ----------
    ok : bool
        True when :func:`vae_zoo.datasets.load` will find (or generate) the data.
    detail : str
        Where the data comes from when ``ok``; otherwise why not and the command that fixes it.

    Examples
    --------
    >>> from vae_zoo.datasets import Availability
    >>> Availability(False, "apt-get install dataset-fashion-mnist").ok
    False
    """

    ok: bool
    detail: str


@dataclass(frozen=True)
class RawImages:
    """A source's images at native resolution, before splitting and resizing.

    ``images`` is ``uint8`` ``(N, C, S, S)``; ``labels`` are ``int64`` class ids.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
