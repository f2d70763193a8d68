"""Bad inputs get a ValueError or TypeError whose message names the argument and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from cka_sim import (
    center_gram,
    cka,
    deconfounded_cka,
    deconfounded_cka_from_grams,
    gram_rbf,
    hsic,
    kernel_cka,
    linear_cka,
    procrustes_distance,
    procrustes_similarity,
)

rng = np.random.default_rng(0)
X = rng.standard_normal((10, 3))
Y = rng.standard_normal((10, 4))


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "error", "match"),
    [
        (X, Y[:9], {}, ValueError, "same number of rows.*10 and 9"),
        (X[:1], Y[:1], {}, ValueError, "x has 1 example.*at least 2"),
        (X[:3], Y[:3], {"debiased": True}, ValueError, "x has 3 example.*at least 4"),
        (np.where(X > 1, np.nan, X), Y, {}, ValueError, "x contains NaN or infinity"),
        (X, np.where(Y > 1, np.inf, Y), {}, ValueError, "y contains NaN or infinity"),
        (np.float64(3.0), Y, {}, ValueError, r"x must have shape \(n_examples"),
        (X[:, 0], Y, {}, ValueError, r"x must have shape.*reshape\(-1, 1\)"),
        (np.empty((10, 0)), Y, {}, ValueError, "x is empty"),
        (np.array([["a", "b"]] * 10), Y, {}, TypeError, "x must hold numbers"),
        (X + 1j, Y, {}, TypeError, "x must be real"),
        (X, Y, {"method": "svd"}, ValueError, "method must be"),
    ],
)
def test_linear_cka_bad_inputs(x, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        linear_cka(x, y, **kwargs)
    # The other measures refuse the same inputs with the same messages.
    with pytest.raises(error, match=match):
        deconfounded_cka(x, y, rng.standard_normal((10, 2)), **kwargs)
    if not kwargs:  # Procrustes has neither ``method`` nor ``debiased``
        for measure in (procrustes_similarity, procrustes_distance):
            with pytest.raises(error, match=match):
                measure(x, y)


@pytest.mark.parametrize(
    ("z", "kwargs", "error", "match"),
    [
        (X[:9], {}, ValueError, "confounder must have one row per example.*9 rows and 10"),
        (np.where(X > 1, np.nan, X), {}, ValueError, "confounder contains NaN or infinity"),
        (X[:, 0], {}, ValueError, r"confounder must have shape.*reshape\(-1, 1\)"),
        (np.empty((10, 0)), {}, ValueError, "confounder is empty"),
        (np.array([["a", "b"]] * 10), {}, TypeError, "confounder must hold numbers"),
        (X + 1j, {}, TypeError, "confounder must be real"),
        (np.ones((10, 3)), {}, ValueError, "confounder is constant"),
        (X, {"method": "svd"}, ValueError, "method must be"),
    ],
)
def test_deconfounded_cka_bad_confounder(z, kwargs, error, match):
    with pytest.raises(error, match=match):
        deconfounded_cka(X, Y, z, **kwargs)


@pytest.mark.parametrize(
    ("kz", "match"),
    [
        (np.eye(5), "gram_confounder must be the same size as gram_x"),
        (np.triu(np.ones((4, 4))), "gram_confounder is not symmetric"),
        (np.where(np.eye(4) > 0, np.inf, 0.5), "gram_confounder contains NaN"),
        (np.ones((4, 3)), "gram_confounder must be a square"),
    ],
)
def test_deconfounded_gram_bad_confounder(kz, match):
    k = np.eye(4) + 0.5
    with pytest.raises(ValueError, match=match):
        deconfounded_cka_from_grams(k, k, kz)


def test_ragged_lists_are_rejected():
    with pytest.raises((TypeError, ValueError), match="x"):
        linear_cka([[1.0, 2.0], [3.0]], [[1.0], [2.0]])


@pytest.mark.parametrize(
    ("k", "l", "match"),
    [
        (np.ones((4, 5)), np.ones((4, 4)), r"gram_x must be a square"),
        (np.eye(4), np.eye(5), "same size"),
        (np.eye(4), np.triu(np.ones((4, 4))), "gram_y is not symmetric"),
        (np.eye(4) * np.nan, np.eye(4), "gram_x contains NaN"),
    ],
)
def test_gram_bad_inputs(k, l, match):
    with pytest.raises(ValueError, match=match):
        cka(k, l)
    with pytest.raises(ValueError, match=match):
        hsic(k, l)


def test_unbiased_needs_four_examples():
    with pytest.raises(ValueError, match="gram_x is 3 x 3; this estimator needs at least 4"):
        hsic(np.eye(3), np.eye(3), unbiased=True)
    with pytest.raises(ValueError, match="gram is 3 x 3"):
        center_gram(np.eye(3), unbiased=True)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bandwidth_must_be_positive(bad):
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        gram_rbf(X, sigma=bad)
    with pytest.raises(ValueError, match="threshold must be a positive finite number"):
        kernel_cka(X, Y, threshold=bad)


def test_zero_median_bandwidth_is_an_error():
    mostly_duplicates = np.vstack([X[:1] + 1.0, np.repeat(X[:1], 9, axis=0)])
    with pytest.raises(ValueError, match="median squared distance.*pass sigma="):
        gram_rbf(mostly_duplicates)


def test_unknown_kernel_and_bad_callable():
    with pytest.raises(ValueError, match="unknown kernel 'cosine'"):
        kernel_cka(X, Y, kernel="cosine")
    with pytest.raises(ValueError, match=r"kernel callable returned shape \(10, 3\)"):
        kernel_cka(X, Y, kernel=lambda a: a)
    with pytest.raises(ValueError, match="sigma must be a number or a pair"):
        kernel_cka(X, Y, sigma=(1.0, 2.0, 3.0))


def test_one_vocabulary_for_choices_and_counts():
    from cka_sim._core.check import check_choice, check_count

    assert check_choice("gram", "method", ("features", "gram")) == "gram"
    with pytest.raises(ValueError, match=r"unknown method 'svd': method must be 'a', 'b' or 'c'"):
        check_choice("svd", "method", ("a", "b", "c"))
    with pytest.raises(ValueError, match="unknown method 3"):
        check_choice(3, "method", ("a",))
    assert check_count(np.int64(5), "n") == 5
    with pytest.raises(TypeError, match="n must be an integer; got float 2.5"):
        check_count(2.5, "n")
    with pytest.raises(TypeError, match="n must be an integer; got bool"):
        check_count(True, "n")
    with pytest.raises(ValueError, match="n must be at least 2; got 1"):
        check_count(1, "n", minimum=2)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_finite_values_whose_sum_overflows_are_accepted_and_a_lone_nan_is_not():
    from cka_sim import StreamingCKA

    rng = np.random.default_rng(3)
    big = (rng.uniform(1.0, 2.0, size=(64, 8)) * 3e37).astype(np.float32)  # sum: inf in float32
    with np.errstate(over="ignore"):
        assert not np.isfinite(big.sum())
    StreamingCKA().update(big, big[:, :4])  # finite values: accepted
    for bad in (np.nan, np.inf, -np.inf):
        x = rng.standard_normal((64, 8))
        x[17, 5] = bad
        with pytest.raises(ValueError, match="x_batch contains NaN or infinity"):
            StreamingCKA().update(x, x[:, :4])
