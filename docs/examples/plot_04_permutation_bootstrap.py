"""
Is a similarity real? A permutation test and a bootstrap interval
==================================================================

A CKA value alone does not say whether two representations are related: with few examples and
many features even independent data give a large biased CKA. Two questions help:

- :func:`~cka_sim.permutation_test`: could a CKA this large arise if the examples of ``y`` were
  unrelated to those of ``x``? It recomputes CKA after shuffling the rows of ``y``, which keeps
  each representation intact and breaks only the pairing.
- :func:`~cka_sim.bootstrap_ci`: how precisely do these examples pin down the population CKA?

Here a layer pair is simulated: ``y`` is a weak random-feature transform of ``x`` plus noise, with
``n = 120`` examples and 200 features each, where biased CKA is inflated.
"""

import matplotlib.pyplot as plt
import numpy as np

from cka_sim import bootstrap_ci, linear_cka, permutation_test

rng = np.random.default_rng(0)
n, p = 120, 200
x = rng.standard_normal((n, p))
y = 0.8 * np.tanh(x @ rng.standard_normal((p, p)) / np.sqrt(p)) + rng.standard_normal((n, p))

test = {d: permutation_test(x, y, debiased=d, n_permutations=2000, seed=1) for d in (False, True)}
interval = bootstrap_ci(x, y, debiased=True, n_resamples=2000, seed=2)

for debiased, result in test.items():
    label = "debiased" if debiased else "biased  "
    print(f"{label} CKA {result.statistic:.4f}, p = {result.pvalue:.4f}")
ci = interval.confidence_interval
print(f"debiased CKA 95% interval: [{ci.low:.4f}, {ci.high:.4f}]")
print(f"(biased CKA of the same data: {linear_cka(x, y):.4f})")

# %%
# Left and middle: the permutation null distributions with the observed value. The biased null
# sits far from 0 (here around 0.63): a biased CKA of 0.69 would look like a strong similarity
# on its own, yet chance alone gives 0.63. The debiased null is centred at 0. Right: the bootstrap distribution of the
# debiased estimate and its 95 % interval.

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
for ax, (debiased, result) in zip(axes[:2], test.items(), strict=True):
    ax.hist(result.null_distribution, bins=40, color="0.7", label="null (2000 permutations)")
    ax.axvline(result.statistic, color="C3", linewidth=2, label="observed")
    ax.set_title(f"{'debiased' if debiased else 'biased'} CKA: p = {result.pvalue:.4f}")
    ax.set_xlabel("CKA after shuffling the rows of y")
    ax.set_ylabel("permutations")
    ax.legend(loc="upper left", fontsize=8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 1.3)  # room for the legend above the bars

ax = axes[2]
counts, _, _ = ax.hist(
    interval.bootstrap_distribution, bins=40, color="C0", alpha=0.5, label="bootstrap replicates"
)
top = counts.max()
ax.plot(
    [ci.low, ci.high],
    [1.12 * top] * 2,
    "|-",
    color="C0",
    linewidth=3,
    markersize=12,
    label="95 % interval",
)
ax.axvline(interval.statistic, color="C3", linewidth=2, label="estimate")
ax.set_title("debiased CKA: bootstrap interval")
ax.set_xlabel("debiased CKA")
ax.set_ylabel("replicates")
ax.set_ylim(0, 1.6 * top)  # the interval and the legend sit above the bars
ax.legend(loc="upper left", fontsize=8)
fig.suptitle(f"One layer pair, n = {n} examples, {p} features each")
plt.show()
