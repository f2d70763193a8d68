"""
CKA and deconfounded CKA of random and trained networks
=======================================================

Every layer of a network inherits part of the similarity structure of its input: two images that
look alike give similar activations in the first layers even when the weights are random. CKA
therefore finds two *untrained* networks similar, and part of the similarity of two trained
networks is the input's, not what they learned.

Deconfounded CKA (:func:`~cka_sim.deconfounded_cka`, Cui et al. 2022) regresses each
representation's Gram matrix on the Gram matrix of the input and compares the residuals: the
similarity left once the input's own structure is taken out.

Here four small multilayer perceptrons see the 8 x 8 digit images that ship with scikit-learn:
two trained to classify them (different seeds) and two left at their random initialisation. We
compare corresponding hidden layers on 597 held-out images.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from cka_sim import deconfounded_cka, linear_cka

torch.set_num_threads(1)
digits = load_digits()
images = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # 1797 x 64, in [0, 1]
labels = torch.tensor(digits.target)
order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
train, test = order[:1200], order[1200:]


def mlp(seed: int) -> nn.Sequential:
    """Three hidden layers of 128 ReLU units and a 10-way head, initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def fit(model: nn.Sequential, seed: int, steps: int = 400) -> float:
    """Train with Adam on minibatches of 64 training images; return the test accuracy."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = train[torch.randint(len(train), (64,), generator=generator)]
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return (model(images[test]).argmax(1) == labels[test]).float().mean().item()


def hidden_layers(model: nn.Sequential) -> list[np.ndarray]:
    """Activations of the three ReLU layers on the held-out images."""
    outputs, h = [], images[test]
    with torch.no_grad():
        for module in model:
            h = module(h)
            if isinstance(module, nn.ReLU):
                outputs.append(h.numpy().astype(np.float64))
    return outputs


trained = [mlp(0), mlp(1)]
accuracy = [fit(model, seed) for model, seed in zip(trained, (10, 11), strict=True)]
random = [mlp(2), mlp(3)]
print("test accuracy of the trained networks:", [round(a, 3) for a in accuracy])

pixels = images[test].numpy().astype(np.float64)  # the confounder: the inputs themselves
acts = {
    name: [hidden_layers(m) for m in models]
    for name, models in (("trained", trained), ("random", random))
}
pairs = {
    "trained vs trained": (acts["trained"][0], acts["trained"][1]),
    "random vs random": (acts["random"][0], acts["random"][1]),
    "trained vs random": (acts["trained"][0], acts["random"][0]),
}
values = {
    measure: {
        pair: [
            function(a, b) if measure == "CKA" else function(a, b, pixels)
            for a, b in zip(first, second, strict=True)
        ]
        for pair, (first, second) in pairs.items()
    }
    for measure, function in (("CKA", linear_cka), ("deconfounded CKA", deconfounded_cka))
}

# %%
# Left, CKA: the two random networks score about 0.85 in the first hidden layer and still more
# than 0.5 in the third, and a random network against a trained one almost as much. That is the
# input's structure, passed through random weights. Right, deconfounded CKA: once the input's
# Gram is regressed out, the two trained networks stay similar to each other (what they learned
# in common), the two random ones fall to between about 0.1 and 0.3, and a random network against
# a trained one falls to about 0.

layers = np.arange(1, 4)
styles = {
    "trained vs trained": ("C0", "o"),
    "random vs random": ("C1", "s"),
    "trained vs random": ("C2", "^"),
}
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained", sharey=True)
for ax, (measure, by_pair) in zip(axes, values.items(), strict=True):
    for pair, ys in by_pair.items():
        colour, marker = styles[pair]
        ax.plot(layers, ys, marker=marker, color=colour, label=pair)
    ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle=":")
    ax.set_xticks(layers, [f"hidden {i}" for i in layers])
    ax.set_xlabel("corresponding layer of both networks")
    ax.set_title(measure)
axes[0].set_ylabel("similarity")
axes[0].set_ylim(-0.2, 1.1)
axes[0].legend(loc="lower left", fontsize=9)
fig.suptitle("Similarity of corresponding layers, 597 held-out digit images")
plt.show()

# %%
# The numbers:

for measure, by_pair in values.items():
    print(measure)
    for pair, ys in by_pair.items():
        print(f"  {pair:18s}", "  ".join(f"{v:6.3f}" for v in ys))
