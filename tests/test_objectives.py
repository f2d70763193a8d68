"""Tests of vae_zoo.objectives on hand-computable cases and against direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_zoo.models import VAEOutput, make_model
from vae_zoo.objectives import (
    DIPVAEII,
    OBJECTIVES,
    AnnealedVAE,
    BetaTCVAE,
    BetaVAE,
    aggregate_posterior_covariance,
    bernoulli_nll,
    gaussian_kl,
    make_objective,
    total_correlation_mws,
)


def output(mu, logvar, z=None, logits=None, pixels=4):
    mu = torch.as_tensor(mu, dtype=torch.float64)
    logvar = torch.as_tensor(logvar, dtype=torch.float64)
    z = mu if z is None else torch.as_tensor(z, dtype=torch.float64)
    if logits is None:
        logits = torch.zeros(mu.shape[0], 1, 1, pixels, dtype=torch.float64)
    return VAEOutput(logits, mu, logvar, z, torch.sigmoid(logits))


def test_kl_of_standard_normal_posterior_is_zero_and_known_values():
    assert torch.equal(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3, 5))
    # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2
    kl = gaussian_kl(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(kl, torch.tensor([0.5, (math.e - 2.0) / 2.0]))


def test_bernoulli_nll_matches_the_formula():
    torch.testing.assert_close(  # logits 0 give probability 1/2: log 2 per pixel
        bernoulli_nll(torch.zeros(2, 1, 3, 3), torch.rand(2, 1, 3, 3)),
        torch.tensor(9 * math.log(2.0)),
    )
    logits, x = torch.randn(3, 2, 4, 4), torch.rand(3, 2, 4, 4)
    p = torch.sigmoid(logits)
    direct = -(x * p.log() + (1 - x) * (1 - p).log()).sum() / 3
    torch.testing.assert_close(bernoulli_nll(logits, x), direct)


def test_beta_vae_is_recon_plus_beta_kl():
    out = output([[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]])
    x = torch.zeros(2, 1, 1, 4, dtype=torch.float64)
    terms = BetaVAE(beta=4.0)(x, out, step=0, dataset_size=10)
    torch.testing.assert_close(terms["recon"], torch.tensor(4 * math.log(2.0), dtype=torch.float64))
    torch.testing.assert_close(terms["kl"], torch.tensor(0.25, dtype=torch.float64))  # (0.5+0)/2
    torch.testing.assert_close(terms["loss"], terms["recon"] + 4.0 * terms["kl"])


def test_tc_of_identical_posteriors_is_the_known_mws_bias():
    # All M posteriors equal: log q(z) = log N(z) - log N and each log q(z_k) = log N(z_k) - log N,
    # so the MWS estimate is (d - 1) log N whatever z is.
    d, m, n = 4, 6, 1000
    mu, logvar = torch.zeros(m, d, dtype=torch.float64), torch.zeros(m, d, dtype=torch.float64)
    z = torch.randn(m, d, dtype=torch.float64)
    tc = total_correlation_mws(z, mu, logvar, n)
    torch.testing.assert_close(tc, torch.tensor((d - 1) * math.log(n), dtype=torch.float64))


def test_tc_matches_a_direct_loop_implementation():
    rng = np.random.default_rng(0)
    m, d, n = 5, 3, 50
    mu, logvar = rng.normal(size=(m, d)), rng.normal(scale=0.5, size=(m, d))
    z = mu + np.exp(logvar / 2) * rng.normal(size=(m, d))

    def log_q(i, j, k):  # log N(z_ik; mu_jk, exp(logvar_jk))
        return -0.5 * (
            math.log(2 * math.pi)
            + logvar[j, k]
            + (z[i, k] - mu[j, k]) ** 2 / math.exp(logvar[j, k])
        )

    total = 0.0
    for i in range(m):
        joint = math.log(sum(math.exp(sum(log_q(i, j, k) for k in range(d))) for j in range(m)))
        marginals = sum(math.log(sum(math.exp(log_q(i, j, k)) for j in range(m))) for k in range(d))
        total += (joint - math.log(n * m)) - (marginals - d * math.log(n * m))
    got = total_correlation_mws(*(torch.from_numpy(a) for a in (z, mu, logvar)), n)
    assert math.isfinite(float(got))
    assert float(got) == pytest.approx(total / m, rel=1e-10)


def test_beta_tcvae_adds_beta_minus_one_tc():
    rng = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(8, 3, generator=rng), torch.randn(8, 3, generator=rng) * 0.3
    z = mu + torch.randn(8, 3, generator=rng)
    out = VAEOutput(torch.randn(8, 1, 2, 2, generator=rng), mu, logvar, z, None)
    x = torch.rand(8, 1, 2, 2, generator=rng)
    terms = BetaTCVAE(beta=6.0)(x, out, step=0, dataset_size=100)
    torch.testing.assert_close(terms["tc"], total_correlation_mws(z, mu, logvar, 100))
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"] + 5.0 * terms["tc"])


def test_annealed_capacity_rises_linearly_then_stays():
    obj = AnnealedVAE(gamma=10.0, c_max=20.0, iteration_threshold=100)
    assert [obj.capacity(s) for s in (0, 25, 100, 1000)] == [0.0, 5.0, 20.0, 20.0]
    out = output([[2.0]], [[0.0]])  # KL = 2
    x = torch.zeros(1, 1, 1, 4, dtype=torch.float64)
    for step, expected_penalty in ((0, 10.0 * 2.0), (25, 10.0 * 3.0), (10, 0.0)):
        terms = obj(x, out, step=step, dataset_size=1)
        torch.testing.assert_close(
            terms["loss"] - terms["recon"], torch.tensor(expected_penalty, dtype=torch.float64)
        )


def test_dip_vae_ii_penalty_on_a_hand_computed_covariance():
    # mu = [[1, 1], [-1, -1]]: Cov(mu) = [[1, 1], [1, 1]]; sigma^2 = 1: Cov_q(z) = [[2, 1], [1, 2]]
    mu, logvar = [[1.0, 1.0], [-1.0, -1.0]], [[0.0, 0.0], [0.0, 0.0]]
    cov = aggregate_posterior_covariance(torch.tensor(mu), torch.tensor(logvar))
    torch.testing.assert_close(cov, torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
    terms = DIPVAEII(lambda_od=3.0, lambda_d=5.0)(
        torch.zeros(2, 1, 1, 4, dtype=torch.float64), output(mu, logvar), step=0, dataset_size=2
    )
    # off-diagonal: 3 * (1 + 1); diagonal: 5 * ((2-1)^2 + (2-1)^2)
    torch.testing.assert_close(terms["dip"], torch.tensor(16.0, dtype=torch.float64))
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"] + terms["dip"])


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_gives_finite_gradients_on_the_model(name):
    model = make_model(1, 32, seed=0)
    x = torch.rand(16, 1, 32, 32)
    terms = make_objective(name)(x, model(x), step=10, dataset_size=1000)
    assert set(terms) >= {"loss", "recon", "kl"}
    terms["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_make_objective_errors_list_the_valid_choices():
    assert make_objective("beta_vae", beta=4).beta == 4
    assert make_objective("dip_vae_ii", lambda_od=2.0).params() == {
        "lambda_od": 2.0,
        "lambda_d": 1.0,
    }
    with pytest.raises(ValueError, match=r"unknown objective 'vae'.*beta_tcvae"):
        make_objective("vae")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['gamma'\].*\['beta'\]"):
        make_objective("beta_vae", gamma=2)
