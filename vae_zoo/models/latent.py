"""The latent code ``z`` of :class:`~vae_zoo.models.ConvVAE`: a reparameterised sample or the
posterior mean."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .._checks import check_choice

DecodeFrom = Literal["sample", "mean"]
DECODE_FROM = ("sample", "mean")


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
