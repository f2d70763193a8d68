"""The names of the compared layers of :class:`~vae_zoo.models.ConvVAE`, in the paper's order.

Each name is a submodule of the model (``input``, ``z`` and ``output`` included), so
``record_activations(model, LAYER_NAMES)`` captures the layers by name; the table of their
modules and output shapes is in :mod:`vae_zoo.models`.
"""

from __future__ import annotations

ENCODER_LAYERS: tuple[str, ...] = (
    "input",
    "encoder.conv1",
    "encoder.conv2",
    "encoder.conv3",
    "encoder.conv4",
    "encoder.dense",
    "encoder.mu",
    "encoder.logvar",
)
"""Encoder-side layers, in forward order (``input`` included, as in the paper's figures)."""

LATENT_LAYERS: tuple[str, ...] = ("z",)
"""The latent code that drives the decoder (a sample, or the mean with ``decode_from="mean"``)."""

DECODER_LAYERS: tuple[str, ...] = (
    "decoder.dense1",
    "decoder.dense2",
    "decoder.deconv1",
    "decoder.deconv2",
    "decoder.deconv3",
    "decoder.deconv4",
    "output",
)
"""Decoder-side layers, in forward order (``output`` = sigmoid of ``decoder.deconv4``)."""

LAYER_NAMES: tuple[str, ...] = ENCODER_LAYERS + LATENT_LAYERS + DECODER_LAYERS
"""All compared layers in the paper's order: module names for ``record_activations``."""
