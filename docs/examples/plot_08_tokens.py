"""
Two transformers compared token by token, padding excluded
===========================================================

Transformer layers are compared with **tokens as samples** (Kornblith et al. 2019, Table F.1;
the ReSi benchmark's ``ntd`` inputs): every non-padded token of a (batch, tokens, features)
output is one row of the CKA data. ``compare_models(..., samples="tokens")`` cuts the padding with
the batch's ``attention_mask``, so left and right padding alike give the CKA of the real tokens.

Here two randomly initialised ``nn.TransformerEncoder`` models of different widths read the same
right-padded batches of token ids. Left in, the padded tokens (all the same id) change the
answer: the panel on the right keeps them (``mask=None``).
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from cka_sim.plot import heatmap
from cka_sim.torch import compare_models

torch.set_num_threads(1)
VOCAB, PAD = 200, 0


class TinyTransformer(nn.Module):
    """Token and position embeddings, then ``depth`` encoder layers (batch first)."""

    def __init__(self, seed: int, width: int, depth: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(torch.randn(1, 32, width) * 0.1)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids) + self.position[:, : input_ids.shape[1]]
        return self.encoder(h, src_key_padding_mask=~attention_mask.bool())


# 12 batches of 16 sequences, lengths 4 to 24, right-padded with the id 0: dict batches as a
# tokeniser gives them, passed whole to each model's forward(input_ids, attention_mask).
generator = torch.Generator().manual_seed(0)
batches = []
for _ in range(12):
    lengths = torch.randint(4, 25, (16,), generator=generator)
    mask = (torch.arange(24) < lengths[:, None]).long()
    ids = torch.randint(1, VOCAB, (16, 24), generator=generator) * mask
    batches.append({"input_ids": ids, "attention_mask": mask})

model_a, model_b = TinyTransformer(1, width=32).eval(), TinyTransformer(2, width=48).eval()
layers = ["embed", "encoder.layers.0", "encoder.layers.1", "encoder.layers.2"]
settings = dict(layers_a=layers, layers_b=layers, estimator="exact", samples="tokens")
masked = compare_models(model_a, model_b, batches, progress=False, **settings)
unmasked = compare_models(model_a, model_b, batches, mask=None, progress=False, **settings)

# %%
# Rows are the layers of the 32-wide model, columns those of the 48-wide one. With the padding cut,
# ``n`` counts the real tokens (debiasing counts samples, not sequences); kept in, every padded
# position adds a row that is the same token id in every sequence.

fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
short = ["embed", "layer 0", "layer 1", "layer 2"]
for ax, (title, result) in zip(
    axes, [("padding excluded", masked), ("padding kept (mask=None)", unmasked)], strict=True
):
    result.row_names, result.col_names = short, short
    heatmap(result, ax=ax, annotate=True, title=f"{title}, n = {result.n_examples:,} tokens")
    ax.set_xlabel("layer of the 48-wide transformer")
    ax.set_ylabel("layer of the 32-wide transformer")
fig.suptitle("Debiased linear CKA, tokens as samples")
plt.show()

# %%
# The largest change the padding makes:

print(f"{abs(masked.values - unmasked.values).max():.3f}")
