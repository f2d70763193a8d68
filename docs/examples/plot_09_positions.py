"""
A CNN against a ViT, spatial positions as samples
=================================================

Flattened, a conv feature map has C·H·W features, which defeats every exact estimator for real
networks. With ``samples="positions"`` every spatial position of an (N, C, H, W) map is one
sample of C features; ``grid=`` first pools every map to one size (adaptive average pooling, as
the ReSi benchmark does), so maps of different sizes, and a CNN's against a ViT's, cover the same
positions.

The ViT-like model's layers output (N, tokens, D); ``select=`` turns its patch tokens into a
(N, D, h, w) map, so both models are compared position by position on a 4 x 4 grid.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from cka_sim.plot import heatmap
from cka_sim.torch import compare_models, layer_table

torch.set_num_threads(1)


def small_cnn(seed: int) -> nn.Sequential:
    """Three conv stages: 16 x 16, 8 x 8 and 4 x 4 maps of 32x32 images."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
    ).eval()


class TinyViT(nn.Module):
    """4 x 4 patches of a 32x32 image (an 8 x 8 grid of tokens), then ``depth`` encoder layers."""

    def __init__(self, seed: int, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.patches = nn.Conv2d(3, width, 4, stride=4)
        self.position = nn.Parameter(torch.randn(1, 64, width) * 0.1)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(images).flatten(2).transpose(1, 2) + self.position
        return self.blocks(tokens)


def as_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 64 tokens, D) -> (N, D, 8, 8): the patch tokens in their image positions."""
    return tokens.transpose(1, 2).unflatten(2, (8, 8))


# Smooth random images: blurred noise, so neighbouring pixels are correlated as in real images.
generator = torch.Generator().manual_seed(0)
images = nn.functional.avg_pool2d(torch.randn(256, 3, 36, 36, generator=generator), 5, stride=1)
loader = images.split(64)

cnn, vit = small_cnn(1), TinyViT(2).eval()
cnn_layers = ["1", "3", "5"]
vit_layers = ["blocks.layers.0", "blocks.layers.1", "blocks.layers.2"]
result = compare_models(
    cnn,
    vit,
    loader,
    layers_a=cnn_layers,
    layers_b=vit_layers,
    samples="positions",
    grid=4,
    select=(None, dict.fromkeys(vit_layers, as_map)),
    estimator="exact",
    progress=False,
)

# %%
# ``layer_table`` shows what each layer gives the estimators: flattened, the first conv stage is
# 4,096 features per image; as positions it is 16 features at each of 256 positions per image.

print(layer_table(cnn, images[:64], cnn_layers))
print(layer_table(cnn, images[:64], cnn_layers, samples="positions"))

# %%
# Rows are the CNN's stages, columns the ViT's layers, over 256 images x 16 positions.

result.row_names = ["conv 16x16", "conv 8x8", "conv 4x4"]
result.col_names = ["ViT layer 0", "ViT layer 1", "ViT layer 2"]
fig, ax = plt.subplots(figsize=(5.6, 4.4), layout="constrained")
heatmap(result, ax=ax, annotate=True, title=f"positions on a 4 x 4 grid, n = {result.n_examples:,}")
ax.set_xlabel("layer of the ViT")
ax.set_ylabel("stage of the CNN")
plt.show()
