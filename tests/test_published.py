"""Fast versions of ``python -m benchmarks.published``: each would fail if the estimator were wrong."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.published import checks
from benchmarks.published.layer_id import identification, similarity_blocks
from cka_sim import gram_linear, hsic, linear_cka, procrustes_similarity


def _orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def _synthetic_networks(count=4, layers=5, n=80, width=20, seed=0):
    """Networks sharing a random ReLU chain, each layer rotated, scaled and slightly perturbed."""
    rng = np.random.default_rng(seed)
    chain, h = [], rng.standard_normal((n, width))
    for _ in range(layers):
        h = np.maximum(h @ rng.standard_normal((width, width)) / np.sqrt(width), 0.0)
        chain.append(h - h.mean(0))
    nets = []
    for _ in range(count):
        nets.append(
            [
                10.0 ** rng.uniform(-3, 3)
                * (c + 0.05 * c.std() * rng.standard_normal(c.shape))
                @ _orthogonal(rng, width)
                for c in chain
            ]
        )
    return nets


def test_layer_identification_needs_invariance_to_scale_and_rotation():
    nets = _synthetic_networks()
    grams = [[gram_linear(a) for a in net] for net in nets]
    layers = len(nets[0])

    def run(pair):
        return identification(similarity_blocks(len(nets), layers, pair))

    cka_found = run(lambda a, i, b, j: linear_cka(nets[a][i], nets[b][j]))
    procrustes = run(lambda a, i, b, j: procrustes_similarity(nets[a][i], nets[b][j]))
    hsic_found = run(lambda a, i, b, j: hsic(grams[a][i], grams[b][j]))
    assert cka_found["checks"] == 4 * 3 * layers
    assert cka_found["accuracy"] == 1.0 and procrustes["accuracy"] == 1.0
    assert hsic_found["accuracy"] < 0.6  # unnormalised: the largest-scale layer wins


def test_identification_counts_ties_and_transposes():
    block = np.array([[1.0, 0.2], [0.9, 0.5]])
    blocks = similarity_blocks(2, 2, lambda a, i, b, j: block[i, j] if a == 0 else block[j, i])
    assert np.array_equal(blocks[1, 0], block.T)
    found = identification(blocks)
    # (0,1): row 0 hit, row 1 miss; (1,0) = block.T: row 0 hit (1.0 > 0.9), row 1 hit (0.5 > 0.2)
    assert found["accuracy"] == 0.75 and found["per_layer"] == [1.0, 0.5]
    assert identification({(0, 1): np.ones((2, 2))})["accuracy"] == 0.0


def test_bias_at_p_much_larger_than_n():
    found = checks.bias_curve(50, [1000], draws=3, seed=1)
    assert found["biased"]["mean"][0] > 0.9
    assert abs(found["debiased"]["mean"][0]) < 0.05


def test_subset_translation_tends_to_the_closed_form_limit():
    rng = np.random.default_rng(2)
    n, p, k = 300, 12, 3
    labels = rng.integers(0, k, n)
    x = rng.standard_normal((n, p)) + 2.0 * np.eye(k, p)[labels]
    weight = np.linalg.lstsq(x, np.eye(k)[labels], rcond=None)[0].T
    subset = labels == 1
    found = checks.subset_translation(x, subset, weight, np.zeros(k), labels, [0, 1, 10, 1e2, 1e4])
    xc, u = x - x.mean(0), subset - subset.mean()
    limit = np.sum((xc.T @ u) ** 2) / (u @ u * np.linalg.norm(xc.T @ xc))
    assert found["limit"] == pytest.approx(limit, rel=1e-12, abs=1e-12)
    assert found["cka"][0] == pytest.approx(1.0)
    assert np.all(np.diff(found["cka"]) < 0)
    assert abs(found["cka"][-1] - limit) < 1e-3 < found["cka"][2] - limit
    assert found["accuracy"] == [found["accuracy_before"]] * 5 and found["accuracy_before"] > 0.6


def test_rbf_cka_tends_to_linear_as_the_bandwidth_grows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 8))
    y = np.tanh(x @ rng.standard_normal((8, 6))) + 0.3 * rng.standard_normal((100, 6))
    found = checks.rbf_to_linear(x, y, [2.0, 4.0, 8.0, 16.0, 64.0])
    gaps = np.array(found["gap"])
    assert gaps[-1] < 1e-4 and np.all(np.diff(gaps) < 0)
    ratios = gaps[:-1] / gaps[1:]  # O(1/threshold²): 4 per doubling, 16 from 16 to 64
    assert np.all((ratios[:3] > 3.0) & (ratios[:3] < 5.0)) and 12.0 < ratios[3] < 20.0


@st.composite
def _triples(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(5, 30))
    widths = draw(st.lists(st.integers(1, 12), min_size=3, max_size=3))
    mix = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, max(widths)))
    return [mix * base[:, :w] + (1 - mix) * rng.standard_normal((n, w)) for w in widths]


@settings(max_examples=60, deadline=None)
@given(_triples())
def test_angular_distances_obey_the_triangle_inequality(reps):
    for name, distance in checks.angles(reps).items():
        if name != "1 - CKA":
            assert checks.triangle_slack(distance)["min_slack"] > -1e-7, name


def test_the_triangle_check_catches_a_non_metric():
    # One-column representations at angles 0, t, 2t: 1 - CKA = sin² of the angle, and
    # sin²(2t) > 2 sin²(t) for t < pi/4, so 1 - CKA breaks the inequality that the angles keep.
    rng = np.random.default_rng(4)
    z = rng.standard_normal((40, 2))
    u, w = np.linalg.qr(z - z.mean(0))[0].T  # centred, orthonormal
    t = np.pi / 8
    reps = [np.cos(k * t) * u[:, None] + np.sin(k * t) * w[:, None] for k in range(3)]
    found = {name: checks.triangle_slack(d) for name, d in checks.angles(reps).items()}
    assert found["1 - CKA"]["violations"] > 0
    assert found["arccos CKA"]["violations"] == 0


def test_tiny_run_writes_json_and_markdown(tmp_path):
    pytest.importorskip("torch")
    from benchmarks.published.run import Config, run

    result = run(Config.tiny(), out=tmp_path, log=lambda line: None)
    (path,) = tmp_path.glob("published-*.json")
    data = json.loads(path.read_text())
    found = data["layer_identification"]["tiny10"]
    assert found["layers"][-1] == "pool" and len(found["layers"]) == 9
    assert set(found["measures"]) >= {"linear CKA", "RBF CKA 0.2", "Procrustes", "dCKA"}
    assert data["meta"]["cka_sim"] == result["meta"]["cka_sim"]
    assert "Kornblith" in path.with_suffix(".md").read_text()
    assert data["triangle"]["arccos CKA"]["violations"] == 0
