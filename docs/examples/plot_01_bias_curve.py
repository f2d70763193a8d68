"""
Biased and debiased CKA as features outnumber examples
======================================================

Linear CKA estimated from ``n`` examples is biased upwards, and the bias grows with the number of
features ``p``. Two *independent* representations, which should have a similarity of 0, reach a
biased CKA near 1 when ``p`` is much larger than ``n``, which is common for wide layers probed with
a few hundred images. The debiased estimator (``debiased=True``: the unbiased HSIC₁ of Song et al.
2012 in the numerator and both denominators) stays near 0.

We draw independent Gaussian activations for ``n = 60`` examples, widen them, and compare the two
estimators over 20 random draws at each width.
"""

import matplotlib.pyplot as plt
import numpy as np

from cka_sim import linear_cka

n = 60
widths = np.unique(np.geomspace(4, 5000, 14).astype(int))
draws = 20
rng = np.random.default_rng(0)

biased = np.empty((len(widths), draws))
debiased = np.empty((len(widths), draws))
for i, p in enumerate(widths):
    for d in range(draws):
        x = rng.standard_normal((n, p))
        y = rng.standard_normal((n, p))  # independent of x: the true CKA is 0
        biased[i, d] = linear_cka(x, y)
        debiased[i, d] = linear_cka(x, y, debiased=True)

# %%
# The biased estimate climbs towards 1 once ``p`` passes ``n``; the debiased one scatters around
# 0 at every width, with a spread that shrinks as features are added. The shaded bands are the
# middle 90 % of the 20 draws.

fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
for values, label, colour in ((biased, "biased", "C3"), (debiased, "debiased", "C0")):
    low, high = np.percentile(values, [5, 95], axis=1)
    ax.fill_between(widths, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.plot(widths, values.mean(axis=1), "o-", color=colour, label=f"{label} (mean of {draws})")
ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle=":")
ax.axvline(n, color="0.3", linewidth=0.8, linestyle="--")
ax.annotate(
    f"p = n = {n}", (n, 0.85), xytext=(6, 0), textcoords="offset points", color="0.3", fontsize=9
)
ax.set_xscale("log")
ax.set_ylim(-0.15, 1.05)
ax.set_xlabel("features p of each representation (log scale)")
ax.set_ylabel("linear CKA of independent data")
ax.set_title(f"Independent representations, n = {n} examples: the true CKA is 0")
ax.legend(loc="center left")
plt.show()

# %%
# The table behind the figure:

print(" p       biased   debiased")
for p, b, d in zip(widths, biased.mean(axis=1), debiased.mean(axis=1), strict=True):
    print(f"{p:5d}   {b:7.3f}   {d:8.3f}")
