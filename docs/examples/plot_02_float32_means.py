"""
float32 activations with large feature means
==============================================

Activations after a ReLU have positive feature means, often around 10 and sometimes in the
thousands. The textbook way to compute linear CKA forms the Gram matrix :math:`K = XX^\\top`
from the raw activations and centres it afterwards, :math:`HKH`. In float32 the centring then
subtracts numbers of size :math:`\\mu^2 p` to recover a spread of size :math:`\\sigma^2 p`, and
rounding wipes the spread out: the result drifts, then becomes noise.

``cka_sim`` centres the features first, multiplies in the input's dtype (here float32) and reduces
in float64, so its float32 answer stays within about 1e-6 of the float64 reference at every
offset.
"""

import matplotlib.pyplot as plt
import numpy as np

from cka_sim import linear_cka


def naive_linear_cka(x, y):
    """Linear CKA from raw Grams, centred afterwards, all in the input's dtype."""
    n = x.shape[0]
    h = np.eye(n, dtype=x.dtype) - np.ones((n, n), dtype=x.dtype) / n
    k = h @ (x @ x.T) @ h
    l = h @ (y @ y.T) @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


rng = np.random.default_rng(0)
n, p = 400, 64
x = rng.standard_normal((n, p))
y = np.maximum(x @ rng.standard_normal((p, 96)) / np.sqrt(p), 0) + rng.standard_normal((n, 96))
truth = linear_cka(x, y)  # float64 reference; CKA does not change when a constant is added

offsets = np.geomspace(1e-1, 1e4, 21)
naive = [naive_linear_cka((x + m).astype(np.float32), (y + m).astype(np.float32)) for m in offsets]
ours = [linear_cka((x + m).astype(np.float32), (y + m).astype(np.float32)) for m in offsets]

# %%
# On the left the two float32 estimates against the float64 truth; on the right their absolute
# errors, on a log scale.

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
left.axhline(truth, color="0.3", linestyle="--", linewidth=1, label=f"float64 truth ({truth:.3f})")
left.plot(offsets, naive, "o-", color="C3", label="raw Gram, centred after (float32)")
left.plot(offsets, ours, "s-", color="C0", markersize=4, label="cka_sim.linear_cka (float32)")
left.set_xscale("log")
left.set_ylim(-0.25, 0.6)
left.set_xlabel("mean added to every feature")
left.set_ylabel("linear CKA")
left.set_title("float32 estimates")
left.legend(loc="lower left", fontsize=9)

right.plot(offsets, np.abs(np.subtract(naive, truth)), "o-", color="C3", label="raw Gram")
right.plot(
    offsets, np.abs(np.subtract(ours, truth)), "s-", color="C0", markersize=4, label="cka_sim"
)
right.set_xscale("log")
right.set_yscale("log")
right.set_ylim(1e-10, 10)
right.set_xlabel("mean added to every feature")
right.set_ylabel("|estimate - float64 truth|")
right.set_title("absolute error")
right.legend(loc="upper left", fontsize=9)
fig.suptitle(f"Linear CKA of float32 activations, n = {n}, shifted by a constant")
plt.show()

# %%
# The numbers at a few offsets:

for m, a, b in list(zip(offsets, naive, ours, strict=True))[::5]:
    print(f"mean {m:9.1f}:  raw Gram {a: .5f}   cka_sim {b: .5f}   truth {truth:.5f}")
