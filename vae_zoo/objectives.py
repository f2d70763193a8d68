"""VAE training objectives: β-VAE, β-TCVAE, Annealed VAE and DIP-VAE-II.

Every objective is the negative ELBO's Bernoulli reconstruction term plus a regulariser on the
posterior ``q(z|x) = N(μ(x), diag σ²(x))`` against the prior ``p(z) = N(0, I)``. All terms are
summed over pixels and latent dimensions and averaged over the minibatch, so values are per
example (nats). Each objective is called as ``objective(x, out, step=..., dataset_size=...)`` and
returns a dict of scalar tensors whose ``"loss"`` entry is minimised; the other entries are logged.

The formulas and defaults follow ``disentanglement_lib`` (Locatello et al. 2019), the code the
paper (Bonheme & Grześ 2023) builds on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .models import VAEOutput

__all__ = [
    "DIPVAEII",
    "OBJECTIVES",
    "AnnealedVAE",
    "BetaTCVAE",
    "BetaVAE",
    "Objective",
    "aggregate_posterior_covariance",
    "bernoulli_nll",
    "gaussian_kl",
    "log_normal",
    "make_objective",
    "total_correlation_mws",
]

_LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood from logits, summed per example, averaged over the batch.

    ``-Σ_p [x_p log σ(l_p) + (1 - x_p) log(1 - σ(l_p))]``, computed stably by
    ``binary_cross_entropy_with_logits``. Targets ``x`` may be grey levels in ``[0, 1]``.
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-dimension ``KL(N(μ, σ²) || N(0, 1)) = ½ (μ² + σ² − log σ² − 1)``, shape of ``mu``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log density ``log N(z; μ, σ²) = −½ (log 2π + log σ² + (z − μ)²/σ²)``."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def total_correlation_mws(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> Tensor:
    """Minibatch-weighted-sampling estimate of the total correlation ``KL(q(z) || Π_k q(z_k))``.

    With a minibatch of ``M`` codes ``z_i ~ q(z|x_i)`` from a dataset of ``N`` examples
    (Chen et al. 2018, eq. S6):

    ``log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N M)``,
    ``log q(z_ik) ≈ logsumexp_j log q(z_ik | x_j) − log(N M)``,
    ``TC ≈ mean_i [log q(z_i) − Σ_k log q(z_ik)]``.

    The estimator is biased at small ``M``: with ``M`` identical posteriors it returns
    ``(d − 1) log N`` rather than 0. Only its gradient drives training.

    References
    ----------
    R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating sources of disentanglement in
    variational autoencoders", NeurIPS 2018.
    """
    m = z.shape[0]
    # log q(z_ik | x_j), shape (M, M, d): row i is the code, column j the conditioning example.
    log_qz_cond = log_normal(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    log_norm = math.log(dataset_size * m)
    log_qz = torch.logsumexp(log_qz_cond.sum(dim=2), dim=1) - log_norm
    log_qz_product = (torch.logsumexp(log_qz_cond, dim=1) - log_norm).sum(dim=1)
    return (log_qz - log_qz_product).mean()


@dataclass
class Objective:
    """Base class: ``objective(x, out, step=, dataset_size=) -> {"loss": ..., ...}``.

    Subclasses are dataclasses whose fields are their hyper-parameters; :meth:`params` returns
    them for logs and checkpoints, and :func:`make_objective` rebuilds an objective from its
    ``name`` and ``params()``.
    """

    name: ClassVar[str] = ""

    def __call__(
        self, x: Tensor, out: VAEOutput, *, step: int, dataset_size: int
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as a plain dict."""
        return asdict(self)

    @staticmethod
    def _elbo_terms(x: Tensor, out: VAEOutput) -> tuple[Tensor, Tensor]:
        recon = bernoulli_nll(out.logits, x)
        kl = gaussian_kl(out.mu, out.logvar).sum(dim=1).mean()
        return recon, kl


@dataclass
class BetaVAE(Objective):
    """β-VAE (Higgins et al. 2017): ``L = recon + β · KL(q(z|x) || p(z))``.

    ``beta = 1`` is the plain VAE (negative ELBO), the paper's default.
    """

    name: ClassVar[str] = "beta_vae"
    beta: float = 1.0

    def __call__(
        self, x: Tensor, out: VAEOutput, *, step: int, dataset_size: int
    ) -> dict[str, Tensor]:
        recon, kl = self._elbo_terms(x, out)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}


@dataclass
class BetaTCVAE(Objective):
    """β-TCVAE (Chen et al. 2018): ``L = recon + KL + (β − 1) · TC``.

    ``KL = MI + TC + dimension-wise KL``, so this weighs the total correlation ``TC`` by ``β``
    and the other two terms by 1, as in ``disentanglement_lib``. ``TC`` is the
    minibatch-weighted-sampling estimate of :func:`total_correlation_mws`, which needs the
    training set size ``N`` (``dataset_size``).
    """

    name: ClassVar[str] = "beta_tcvae"
    beta: float = 6.0

    def __call__(
        self, x: Tensor, out: VAEOutput, *, step: int, dataset_size: int
    ) -> dict[str, Tensor]:
        recon, kl = self._elbo_terms(x, out)
        tc = total_correlation_mws(out.z, out.mu, out.logvar, dataset_size)
        return {"loss": recon + kl + (self.beta - 1.0) * tc, "recon": recon, "kl": kl, "tc": tc}


@dataclass
class AnnealedVAE(Objective):
    """Annealed VAE (Burgess et al. 2018): ``L = recon + γ · |KL − C(t)|``.

    The capacity rises linearly with the step ``t``:
    ``C(t) = min(c_max, c_max · t / iteration_threshold)``. Defaults are ``disentanglement_lib``'s
    (γ = 1000, ``c_max`` = 25 nats over 100,000 steps); for short runs lower
    ``iteration_threshold`` so that the capacity is reached.
    """

    name: ClassVar[str] = "annealed_vae"
    gamma: float = 1000.0
    c_max: float = 25.0
    iteration_threshold: int = 100_000

    def capacity(self, step: int) -> float:
        """``C(t)``, the target KL in nats at step ``t``."""
        return min(self.c_max, self.c_max * step / self.iteration_threshold)

    def __call__(
        self, x: Tensor, out: VAEOutput, *, step: int, dataset_size: int
    ) -> dict[str, Tensor]:
        recon, kl = self._elbo_terms(x, out)
        c = self.capacity(step)
        loss = recon + self.gamma * (kl - c).abs()
        return {"loss": loss, "recon": recon, "kl": kl, "capacity": kl.new_tensor(c)}


@dataclass
class DIPVAEII(Objective):
    """DIP-VAE-II (Kumar et al. 2018).

    ``L = recon + KL + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)²``, where

    ``C = Cov_q(z) = E_x[diag σ²(x)] + Cov_x[μ(x)]`` is the covariance of the aggregate
    posterior, estimated on the minibatch (``Cov`` with the ``1/M`` normalisation, as in
    ``disentanglement_lib``).
    """

    name: ClassVar[str] = "dip_vae_ii"
    lambda_od: float = 1.0
    lambda_d: float = 1.0

    def __call__(
        self, x: Tensor, out: VAEOutput, *, step: int, dataset_size: int
    ) -> dict[str, Tensor]:
        recon, kl = self._elbo_terms(x, out)
        cov = aggregate_posterior_covariance(out.mu, out.logvar)
        diag = torch.diagonal(cov)
        off_diag = cov - torch.diag(diag)
        penalty = self.lambda_od * off_diag.pow(2).sum() + self.lambda_d * (diag - 1.0).pow(2).sum()
        return {"loss": recon + kl + penalty, "recon": recon, "kl": kl, "dip": penalty}


def aggregate_posterior_covariance(mu: Tensor, logvar: Tensor) -> Tensor:
    """``Cov_q(z) = mean_i diag(σ_i²) + mean_i μ_i μ_iᵀ − μ̄ μ̄ᵀ`` (``d x d``)."""
    centred = mu - mu.mean(dim=0, keepdim=True)
    cov_mu = centred.T @ centred / mu.shape[0]
    return cov_mu + torch.diag(logvar.exp().mean(dim=0))


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (BetaVAE, BetaTCVAE, AnnealedVAE, DIPVAEII)
}
"""Objectives by name: ``beta_vae``, ``beta_tcvae``, ``annealed_vae``, ``dip_vae_ii``."""


def make_objective(name: str, **params: Any) -> Objective:
    """Build an objective by name, e.g. ``make_objective("beta_vae", beta=4)``.

    Raises
    ------
    ValueError
        For an unknown name or hyper-parameter; the message lists the valid ones.
    """
    try:
        cls = OBJECTIVES[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}"
        ) from None
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"objective {name!r} has no parameter(s) {unknown}; its parameters are {sorted(valid)}"
        )
    return cls(**params)
