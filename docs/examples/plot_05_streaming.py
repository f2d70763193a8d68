"""
Exact CKA over more data than fits in memory
============================================

:class:`~cka_sim.StreamingCKA` computes the full-data linear CKA of two representations from a
stream of batches, without keeping the examples: its state is the count, the feature means and
the centred co-moment matrices, merged batch by batch with the pairwise update of Chan, Golub &
LeVeque. The state has :math:`p_1^2 + p_2^2 + p_1 p_2` float64 numbers, whatever the number of
examples.

Here a loader is simulated: it generates 60 batches of 1,000 examples on the fly, as a
``DataLoader`` over a large dataset would. The figure extrapolates nothing: the memory of the
state is measured, and it stays the same for a billion examples, while storing their float32
activations would take 900 GB.
"""

import matplotlib.pyplot as plt
import numpy as np

from cka_sim import StreamingCKA, linear_cka

p1, p2 = 128, 96
batch_size, n_batches = 1000, 60
mixing = np.random.default_rng(0).standard_normal((p1, p2)) / np.sqrt(p1)


def batches(seed):
    """Yield (x, y) float32 batches: y is a noisy ReLU transform of x, feature means near 5."""
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        x = rng.standard_normal((batch_size, p1)) + 5.0
        y = np.maximum((x - 5.0) @ mixing, 0) + rng.standard_normal((batch_size, p2)) + 5.0
        yield x.astype(np.float32), y.astype(np.float32)


def state_bytes(accumulator):
    """Bytes held by the accumulator's arrays (from its state_dict)."""

    def walk(value):
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, dict):
            return sum(walk(v) for v in value.values())
        if isinstance(value, list | tuple):
            return sum(walk(v) for v in value)
        return 0

    return walk(accumulator.state_dict())


accumulator = StreamingCKA()
seen, running, held = [], [], []
for i, (x, y) in enumerate(batches(seed=1)):
    accumulator.update(x, y)
    if i < 10 or (i + 1) % 5 == 0:
        seen.append((i + 1) * batch_size)
        running.append(accumulator.compute())
        held.append(state_bytes(accumulator))

# %%
# The streamed value is the CKA of all the examples, not an approximation: on a prefix small
# enough to hold in memory, it equals :func:`~cka_sim.linear_cka` of the concatenated batches.

prefix = StreamingCKA()
stored = []
for i, (x, y) in enumerate(batches(seed=1)):
    if i == 10:
        break
    prefix.update(x, y)
    stored.append((x, y))
xs, ys = np.concatenate([b[0] for b in stored]), np.concatenate([b[1] for b in stored])
print(f"10,000 examples: streamed {prefix.compute():.10f}, in memory {linear_cka(xs, ys):.10f}")
print(f"all {seen[-1]:,} examples: CKA {running[-1]:.6f}, state {held[-1] / 1e6:.2f} MB")

# %%
# Left: the estimate settles as examples accumulate. Right: the memory the stored activations
# would need grows with the examples; the accumulator's state does not.

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
left.plot(seen, running, "o-", color="C0", markersize=3)
left.set_xscale("log")
left.set_xlabel("examples seen")
left.set_ylabel("linear CKA of all examples so far")
left.set_title("StreamingCKA.compute() as batches arrive")

raw = np.array(seen) * (p1 + p2) * 4  # float32 activations of both representations
right.plot(seen, raw / 1e6, color="C3", label="storing the activations (float32)")
right.plot(seen, np.array(held) / 1e6, color="C0", label="StreamingCKA state (float64)")
right.set_xscale("log")
right.set_yscale("log")
right.set_xlabel("examples seen")
right.set_ylabel("memory (MB)")
right.set_title(f"memory, p1 = {p1}, p2 = {p2}")
right.legend(loc="upper left")
fig.suptitle(f"Exact linear CKA over {n_batches} batches of {batch_size:,} examples")
plt.show()
