"""Make the figures of docs/statistics.md (run: python docs/make_statistics_figures.py).

Synthetic two-"network" example: both networks read the same 200 inputs through random tanh
layers; network B shares the first layers' weights with A and then diverges. Runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cka_sim.plot import heatmap, layer_curve
from cka_sim.stats import bootstrap_ci, cka_matrix_with_uncertainty, permutation_test

OUT = Path(__file__).resolve().parent / "figures"
SEED = 0


def networks(n: int = 200) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Activations of four layers of two random tanh networks on the same n inputs."""
    rng = np.random.default_rng(SEED)
    inputs = rng.standard_normal((n, 20))
    widths = [64, 64, 32, 16]
    acts_a: dict[str, np.ndarray] = {}
    acts_b: dict[str, np.ndarray] = {}
    h_a = h_b = inputs
    for depth, width in enumerate(widths):
        w_a = rng.standard_normal((h_a.shape[1], width)) / np.sqrt(h_a.shape[1])
        # B shares A's first two layers, then gets its own weights.
        w_b = (
            w_a if depth < 2 else rng.standard_normal((h_b.shape[1], width)) / np.sqrt(h_b.shape[1])
        )
        h_a = np.tanh(h_a @ w_a + 0.3 * rng.standard_normal((n, width)))
        h_b = np.tanh(h_b @ w_b + 0.3 * rng.standard_normal((n, width)))
        acts_a[f"layer{depth + 1}"], acts_b[f"layer{depth + 1}"] = h_a, h_b
    return acts_a, acts_b


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    acts_a, acts_b = networks()

    # 1. Null distribution of one pair, and the observed value.
    x, y = acts_a["layer4"], acts_b["layer4"]
    test = permutation_test(x, y, n_permutations=999, debiased=True, seed=SEED)
    boot = bootstrap_ci(x, y, n_resamples=1000, debiased=True, seed=SEED)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.hist(test.null_distribution, bins=40, color="0.6", label="null (999 permutations)")
    ax.hist(
        boot.bootstrap_distribution,
        bins=40,
        color="tab:blue",
        alpha=0.6,
        label="half-sample replicates",
    )
    ax.axvline(test.statistic, color="black", label=f"observed {test.statistic:.3f}")
    ci = boot.confidence_interval
    ax.axvspan(ci.low, ci.high, color="tab:blue", alpha=0.15, label="95% BCa interval")
    ax.set_xlabel("debiased CKA, layer4 of A vs layer4 of B")
    ax.set_ylabel("count")
    ax.set_title(f"permutation p = {test.pvalue:.3f}")
    ax.legend(fontsize=8)
    fig.savefig(OUT / "statistics_null.png", bbox_inches="tight", dpi=110)
    plt.close(fig)

    # 2. Layer x layer matrix with p-values and intervals.
    result = cka_matrix_with_uncertainty(
        acts_a, acts_b, debiased=True, n_resamples=500, n_permutations=499, seed=SEED
    )
    ax = heatmap(result, annotate=True, title="debiased CKA, network A vs B (× : p > 0.05)")
    ax.figure.savefig(OUT / "statistics_heatmap.png", bbox_inches="tight", dpi=110)
    plt.close(ax.figure)

    # 3. Corresponding layers along depth, with 95% bands; biased CKA for comparison.
    biased = cka_matrix_with_uncertainty(
        acts_a, acts_b, debiased=False, n_resamples=500, n_permutations=0, method="basic", seed=SEED
    )
    ax = layer_curve(
        [result, biased],
        labels=["A vs B, debiased", "A vs B, biased"],
        title="CKA of corresponding layers (95% intervals)",
    )
    ax.figure.savefig(OUT / "statistics_curve.png", bbox_inches="tight", dpi=110)
    plt.close(ax.figure)

    print(
        f"layer4: CKA {test.statistic:.3f}, p = {test.pvalue:.3f}, "
        f"95% interval [{ci.low:.3f}, {ci.high:.3f}]"
    )
    print(np.array2string(result.values, precision=3))
    print(np.array2string(result.pvalues, precision=3))


if __name__ == "__main__":
    main()
