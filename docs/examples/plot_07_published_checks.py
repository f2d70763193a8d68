"""
Published checks: layer identification and the bias at p >> n
=============================================================

Two of the field's sanity checks of CKA, as ``python -m benchmarks.published`` reproduces them
(the full table, with every published figure beside ours, is in the validation guide).

**Layer identification** (Kornblith et al. 2019, Table 2): ten Tiny-10 CNNs trained from
different seeds; for each layer of one network, is the most similar layer of another network the
same layer? A good similarity index puts the largest value of each row of the heatmap on the
diagonal. The networks are trained by the benchmark (a few minutes on two cores, on
Fashion-MNIST), so this example reads its committed result instead of training them again.
"""

import json

import matplotlib.pyplot as plt
import numpy as np

from benchmarks.published.run import RESULTS
from cka_sim import linear_cka

path = sorted(RESULTS.glob("published-*.json"))[-1]
result = json.loads(path.read_text())
found = result["layer_identification"]["tiny10"]
block = np.array(found["linear_cka_01"])
layers = found["layers"]

fig, ax = plt.subplots(figsize=(5.6, 4.8), layout="constrained")
image = ax.imshow(block, vmin=0, vmax=1, cmap="magma")
rows = np.arange(len(layers))
ax.scatter(block.argmax(axis=1), rows, marker="o", facecolors="none", edgecolors="C0", s=160,
           label="most similar layer of network 1")  # fmt: skip
ax.set_xticks(rows, layers, rotation=60)
ax.set_yticks(rows, layers)
ax.set_xlabel("Tiny-10, seed 1")
ax.set_ylabel("Tiny-10, seed 0")
ax.set_title("Linear CKA between two Tiny-10 networks")
ax.legend(loc="lower left", fontsize=8)
fig.colorbar(image, ax=ax, shrink=0.8)
plt.show()

# %%
# Over every ordered pair of the ten networks and every layer, the share of rows whose maximum is
# on the diagonal:

for name, measure in found["measures"].items():
    print(f"{name:22s} {100 * measure['accuracy']:5.1f} % of {measure['checks']} checks")

# %%
# **Bias at p >> n** (Murphy et al. 2024): two *independent* Gaussian representations of
# ``n = 50`` examples. Their true CKA is 0, but biased CKA climbs towards 1 as the number of
# features ``p`` grows; the debiased estimator stays near 0. Computed here, ten draws per width.

n, draws = 50, 10
widths = np.array([5, 10, 25, 50, 100, 250, 500, 1000, 2500])
rng = np.random.default_rng(0)
curves = {"biased": np.empty((len(widths), draws)), "debiased": np.empty((len(widths), draws))}
for i, p in enumerate(widths):
    for d in range(draws):
        x, y = rng.standard_normal((n, p)), rng.standard_normal((n, p))
        curves["biased"][i, d] = linear_cka(x, y)
        curves["debiased"][i, d] = linear_cka(x, y, debiased=True)

fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
for (name, values), colour in zip(curves.items(), ("C3", "C0"), strict=True):
    ax.errorbar(widths / n, values.mean(axis=1), yerr=values.std(axis=1), fmt="o-",
                color=colour, capsize=3, label=f"{name} (mean ± sd of {draws})")  # fmt: skip
ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle=":")
ax.set_xscale("log")
ax.set_xlabel("p / n")
ax.set_ylabel("linear CKA of independent data")
ax.set_title(f"Independent Gaussians, n = {n}: the true CKA is 0")
ax.legend()
plt.show()

at = int(np.flatnonzero(widths == 1000)[0])
print(f"p = 1000: biased {curves['biased'][at].mean():.3f}, "
      f"debiased {curves['debiased'][at].mean():+.3f} (published: about 0.95 and 0)")  # fmt: skip
