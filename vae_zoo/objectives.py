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
    r"""Bernoulli negative log-likelihood from logits, summed per example, averaged over the batch.

    .. math:: -\frac{1}{n}\sum_{i=1}^{n}\sum_p \big[x_{ip}\log\sigma(l_{ip})
              + (1 - x_{ip})\log(1 - \sigma(l_{ip}))\big]

    computed stably by ``binary_cross_entropy_with_logits``.

    Parameters
    ----------
    logits : torch.Tensor, shape (n, ...)
        Bernoulli logits of the reconstruction.
    x : torch.Tensor, shape (n, ...)
        Targets of the same shape; grey levels in ``[0, 1]`` are allowed.

    Returns
    -------
    torch.Tensor
        A 0-dim tensor, in nats per example; differentiable.

    Raises
    ------
    ValueError
        If ``logits`` and ``x`` differ in shape (from torch).

    References
    ----------
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR (appendix C.1, the Bernoulli
    decoder).

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.objectives import bernoulli_nll
    >>> x = torch.tensor([[1.0, 0.0]])
    >>> round(bernoulli_nll(torch.zeros(1, 2), x).item(), 4)  # 2 log 2
    1.3863
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Per-dimension KL divergence of a diagonal Gaussian posterior from the standard normal.

    .. math:: \mathrm{KL}\big(\mathcal N(\mu, \sigma^2)\,\|\,\mathcal N(0, 1)\big)
              = \tfrac12\left(\mu^2 + \sigma^2 - \log\sigma^2 - 1\right)

    Parameters
    ----------
    mu : torch.Tensor
        Posterior means.
    logvar : torch.Tensor
        Posterior log-variances :math:`\log\sigma^2`, broadcastable with ``mu``.

    Returns
    -------
    torch.Tensor
        The divergence of each element, in nats, with the broadcast shape; sum over the latent
        dimensions for the KL of a code.

    Raises
    ------
    RuntimeError
        If the shapes do not broadcast (from torch).

    References
    ----------
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR (appendix B).

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.objectives import gaussian_kl
    >>> gaussian_kl(torch.tensor([0.0, 1.0]), torch.zeros(2))
    tensor([0.0000, 0.5000])
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Elementwise log density of a normal distribution.

    .. math:: \log\mathcal N(z; \mu, \sigma^2)
              = -\tfrac12\left(\log 2\pi + \log\sigma^2 + (z - \mu)^2/\sigma^2\right)

    Parameters
    ----------
    z : torch.Tensor
        Where to evaluate the density.
    mu : torch.Tensor
        Means, broadcastable with ``z``.
    logvar : torch.Tensor
        Log-variances :math:`\log\sigma^2`, broadcastable with ``z``.

    Returns
    -------
    torch.Tensor
        The log density of each element, with the broadcast shape.

    Raises
    ------
    RuntimeError
        If the shapes do not broadcast (from torch).

    References
    ----------
    Bishop (2006), *Pattern Recognition and Machine Learning*, Springer, section 1.2.4.

    Examples
    --------
    >>> import math, torch
    >>> from vae_zoo.objectives import log_normal
    >>> value = log_normal(torch.zeros(1), torch.zeros(1), torch.zeros(1)).item()
    >>> math.isclose(value, -0.5 * math.log(2 * math.pi), rel_tol=1e-6)
    True
    """
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def total_correlation_mws(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> Tensor:
    r"""Minibatch-weighted-sampling estimate of the total correlation of the aggregate posterior.

    The total correlation is :math:`\mathrm{KL}(q(z)\,\|\,\prod_k q(z_k))`. With a minibatch
    of :math:`M` codes :math:`z_i \sim q(z|x_i)` from a dataset of :math:`N` examples
    (Chen et al. 2018, eq. S6):

    .. math:: \log q(z_i) \approx \operatorname{logsumexp}_j \log q(z_i | x_j) - \log(NM),
              \qquad
              \log q(z_{ik}) \approx \operatorname{logsumexp}_j \log q(z_{ik} | x_j) - \log(NM),

    .. math:: \mathrm{TC} \approx \frac1M\sum_i \Big[\log q(z_i) - \sum_k \log q(z_{ik})\Big].

    The estimator is biased at small :math:`M`: with :math:`M` identical posteriors it returns
    :math:`(d - 1)\log N` rather than 0. Only its gradient drives training.

    Parameters
    ----------
    z : torch.Tensor, shape (M, d)
        Sampled codes, one per example of the minibatch.
    mu : torch.Tensor, shape (M, d)
        Posterior means of the same examples.
    logvar : torch.Tensor, shape (M, d)
        Posterior log-variances of the same examples.
    dataset_size : int
        :math:`N`, the number of training examples the minibatch was drawn from.

    Returns
    -------
    torch.Tensor
        A 0-dim tensor, in nats; differentiable.

    Raises
    ------
    RuntimeError
        If the shapes differ (from torch).

    References
    ----------
    R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating sources of disentanglement in
    variational autoencoders", NeurIPS 2018.

    Examples
    --------
    >>> import math, torch
    >>> from vae_zoo.objectives import total_correlation_mws
    >>> z = mu = logvar = torch.zeros(8, 3)  # identical posteriors: the bias is (d - 1) log N
    >>> tc = total_correlation_mws(z, mu, logvar, dataset_size=1000).item()
    >>> math.isclose(tc, 2 * math.log(1000), rel_tol=1e-5)
    True
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
    """Base class of the objectives: ``objective(x, out, step=, dataset_size=) -> dict``.

    Subclasses are dataclasses whose fields are their hyper-parameters; :meth:`params` returns
    them for logs and checkpoints, and :func:`make_objective` rebuilds an objective from its
    ``name`` and ``params()``. Calling an objective with the images ``x``, the model's
    :class:`~vae_zoo.models.VAEOutput`, the training ``step`` and the training set size returns a
    dict of 0-dim tensors whose ``"loss"`` entry is minimised; the other entries are logged.

    Raises
    ------
    NotImplementedError
        When the base class itself is called; use a subclass.

    References
    ----------
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML (``disentanglement_lib``, whose objectives these are).

    Examples
    --------
    >>> from vae_zoo.objectives import BetaVAE, make_objective
    >>> objective = BetaVAE(beta=4.0)
    >>> make_objective(objective.name, **objective.params()) == objective
    True
    """

    name: ClassVar[str] = ""

    def __call__(
        self, x: Tensor, out: VAEOutput, *, step: int, dataset_size: int
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Return the hyper-parameters as a plain dict.

        Returns
        -------
        dict
            Field name to value, e.g. ``{"beta": 4.0}``.
        """
        return asdict(self)

    @staticmethod
    def _elbo_terms(x: Tensor, out: VAEOutput) -> tuple[Tensor, Tensor]:
        recon = bernoulli_nll(out.logits, x)
        kl = gaussian_kl(out.mu, out.logvar).sum(dim=1).mean()
        return recon, kl


@dataclass
class BetaVAE(Objective):
    r"""The β-VAE objective (Higgins et al. 2017), the plain VAE at ``beta = 1``.

    .. math:: L = \mathrm{recon} + \beta\,\mathrm{KL}\big(q(z|x)\,\|\,p(z)\big)

    ``beta = 1`` is the negative ELBO, the paper's default.

    Parameters
    ----------
    beta : float, default 1.0
        Weight of the KL term.

    References
    ----------
    Higgins et al. (2017), *β-VAE: Learning Basic Visual Concepts with a Constrained Variational
    Framework*, ICLR.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.objectives import BetaVAE
    >>> model = make_model(channels=1, size=32, seed=0)
    >>> x = torch.rand(4, 1, 32, 32)
    >>> terms = BetaVAE(beta=4.0)(x, model(x), step=0, dataset_size=1000)
    >>> sorted(terms)
    ['kl', 'loss', 'recon']
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
    r"""The β-TCVAE objective (Chen et al. 2018): the total correlation weighted by β.

    .. math:: L = \mathrm{recon} + \mathrm{KL} + (\beta - 1)\,\mathrm{TC}

    :math:`\mathrm{KL} = \mathrm{MI} + \mathrm{TC} + \text{dimension-wise KL}`, so this weighs
    the total correlation TC by β and the other two terms by 1, as in ``disentanglement_lib``.
    TC is the minibatch-weighted-sampling estimate of :func:`total_correlation_mws`, which needs
    the training set size ``N`` (``dataset_size``).

    Parameters
    ----------
    beta : float, default 6.0
        Weight of the total correlation.

    References
    ----------
    Chen, Li, Grosse & Duvenaud (2018), *Isolating Sources of Disentanglement in Variational
    Autoencoders*, NeurIPS.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.objectives import BetaTCVAE
    >>> model = make_model(channels=1, size=32, seed=0)
    >>> x = torch.rand(4, 1, 32, 32)
    >>> terms = BetaTCVAE()(x, model(x), step=0, dataset_size=1000)
    >>> sorted(terms)
    ['kl', 'loss', 'recon', 'tc']
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
    r"""The Annealed VAE objective (Burgess et al. 2018): the KL pulled towards a rising capacity.

    .. math:: L = \mathrm{recon} + \gamma\,\lvert \mathrm{KL} - C(t)\rvert,
              \qquad C(t) = \min\big(c_{\max},\; c_{\max}\, t / t_{\text{threshold}}\big)

    The capacity rises linearly with the step :math:`t`. Defaults are ``disentanglement_lib``'s
    (γ = 1000, ``c_max`` = 25 nats over 100,000 steps); for short runs lower
    ``iteration_threshold`` so that the capacity is reached.

    Parameters
    ----------
    gamma : float, default 1000.0
        Weight of the distance between the KL and the capacity.
    c_max : float, default 25.0
        Final capacity, in nats.
    iteration_threshold : int, default 100_000
        Step at which the capacity reaches ``c_max``.

    References
    ----------
    Burgess et al. (2018), *Understanding disentangling in β-VAE*, arXiv:1804.03599.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.objectives import AnnealedVAE
    >>> model = make_model(channels=1, size=32, seed=0)
    >>> x = torch.rand(4, 1, 32, 32)
    >>> terms = AnnealedVAE(iteration_threshold=1000)(x, model(x), step=0, dataset_size=1000)
    >>> sorted(terms)
    ['capacity', 'kl', 'loss', 'recon']
    """

    name: ClassVar[str] = "annealed_vae"
    gamma: float = 1000.0
    c_max: float = 25.0
    iteration_threshold: int = 100_000

    def capacity(self, step: int) -> float:
        """Return the capacity :math:`C(t)`, the target KL in nats at a training step.

        Parameters
        ----------
        step : int
            The training step :math:`t`.

        Returns
        -------
        float
            ``min(c_max, c_max * step / iteration_threshold)``.
        """
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
    r"""The DIP-VAE-II objective (Kumar et al. 2018): the aggregate posterior's covariance near I.

    .. math:: L = \mathrm{recon} + \mathrm{KL} + \lambda_{od}\sum_{i\ne j} C_{ij}^2
              + \lambda_d \sum_i (C_{ii} - 1)^2

    where :math:`C = \mathrm{Cov}_{q}(z) = \mathbb E_x[\operatorname{diag}\sigma^2(x)] +
    \mathrm{Cov}_x[\mu(x)]` is the covariance of the aggregate posterior, estimated on the
    minibatch (:func:`aggregate_posterior_covariance`, with the :math:`1/M` normalisation, as in
    ``disentanglement_lib``).

    Parameters
    ----------
    lambda_od : float, default 1.0
        Weight of the off-diagonal penalty.
    lambda_d : float, default 1.0
        Weight of the diagonal penalty.

    References
    ----------
    Kumar, Sattigeri & Balakrishnan (2018), *Variational Inference of Disentangled Latent
    Concepts from Unlabeled Observations*, ICLR.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.objectives import DIPVAEII
    >>> model = make_model(channels=1, size=32, seed=0)
    >>> x = torch.rand(4, 1, 32, 32)
    >>> terms = DIPVAEII()(x, model(x), step=0, dataset_size=1000)
    >>> sorted(terms)
    ['dip', 'kl', 'loss', 'recon']
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
    r"""Covariance of the aggregate posterior of a minibatch.

    .. math:: \mathrm{Cov}_q(z) = \frac1M\sum_i \operatorname{diag}(\sigma_i^2)
              + \frac1M\sum_i \mu_i\mu_i^\top - \bar\mu\bar\mu^\top

    Parameters
    ----------
    mu : torch.Tensor, shape (M, d)
        Posterior means.
    logvar : torch.Tensor, shape (M, d)
        Posterior log-variances.

    Returns
    -------
    torch.Tensor, shape (d, d)
        The covariance, with the :math:`1/M` normalisation.

    Raises
    ------
    RuntimeError
        If the shapes differ (from torch).

    References
    ----------
    Kumar, Sattigeri & Balakrishnan (2018), *Variational Inference of Disentangled Latent
    Concepts from Unlabeled Observations*, ICLR.

    Examples
    --------
    >>> import torch
    >>> from vae_zoo.objectives import aggregate_posterior_covariance
    >>> aggregate_posterior_covariance(torch.tensor([[1.0], [-1.0]]), torch.zeros(2, 1))
    tensor([[2.]])
    """
    centred = mu - mu.mean(dim=0, keepdim=True)
    cov_mu = centred.T @ centred / mu.shape[0]
    return cov_mu + torch.diag(logvar.exp().mean(dim=0))


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (BetaVAE, BetaTCVAE, AnnealedVAE, DIPVAEII)
}
"""Objectives by name: ``beta_vae``, ``beta_tcvae``, ``annealed_vae``, ``dip_vae_ii``."""


def make_objective(name: str, **params: Any) -> Objective:
    """Build an objective by name, e.g. ``make_objective("beta_vae", beta=4)``.

    Parameters
    ----------
    name : {"beta_vae", "beta_tcvae", "annealed_vae", "dip_vae_ii"}
        A key of :data:`OBJECTIVES`.
    **params : Any
        Hyper-parameters of that objective; the others keep their defaults.

    Returns
    -------
    Objective
        An instance of the named class.

    Raises
    ------
    ValueError
        For an unknown name or hyper-parameter; the message lists the valid ones.

    References
    ----------
    Locatello et al. (2019), *Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations*, ICML (``disentanglement_lib``'s names and defaults).

    Examples
    --------
    >>> from vae_zoo.objectives import make_objective
    >>> make_objective("beta_tcvae", beta=4.0)
    BetaTCVAE(beta=4.0)
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
