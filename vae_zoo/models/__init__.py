"""The paper's convolutional VAE (Burgess et al. 2018; Locatello et al. 2019; Bonheme & Grześ 2023).

Every layer that CKA compares is a real submodule with a stable name, so
``cka_sim.torch.record_activations(model, LAYER_NAMES)`` captures any of them by name. In the
paper's order:

=====================  =====================================  ==================  ==================
name                   module                                 output at 64 px     output at 32 px
=====================  =====================================  ==================  ==================
``input``              identity                               c x 64 x 64         c x 32 x 32
``encoder.conv1``      Conv 32, k4 s2 p1, ReLU                32 x 32 x 32        32 x 16 x 16
``encoder.conv2``      Conv 32, k4 s2 p1, ReLU                32 x 16 x 16        32 x 8 x 8
``encoder.conv3``      Conv 64, k2 s2 p0, ReLU                64 x 8 x 8          64 x 4 x 4
``encoder.conv4``      Conv 64, k2 s2 p0, ReLU                64 x 4 x 4          64 x 2 x 2
``encoder.dense``      Dense 256, ReLU (flat input)           256                 256
``encoder.mu``         Dense d (posterior mean)               d                   d
``encoder.logvar``     Dense d (posterior log-variance)       d                   d
``z``                  reparameterisation (sample or mean)    d                   d
``decoder.dense1``     Dense 256, ReLU                        256                 256
``decoder.dense2``     Dense 4·4·64 = 1024 (2·2·64 = 256),    1024                256
                       ReLU
``decoder.deconv1``    ConvT 64, k4 s2 p1, ReLU               64 x 8 x 8          64 x 4 x 4
``decoder.deconv2``    ConvT 32, k4 s2 p1, ReLU               32 x 16 x 16        32 x 8 x 8
``decoder.deconv3``    ConvT 32, k4 s2 p1, ReLU               32 x 32 x 32        32 x 16 x 16
``decoder.deconv4``    ConvT c, k4 s2 p1 (Bernoulli logits)   c x 64 x 64         c x 32 x 32
``output``             sigmoid (Bernoulli mean, an image)     c x 64 x 64         c x 32 x 32
=====================  =====================================  ==================  ==================

At 32 px the network is the same four stride-2 convolutions, so the last feature map is
2 x 2 x 64 = 256 values instead of 4 x 4 x 64 = 1024 and ``decoder.dense2`` has 256 units. The
hooked output of every ``conv``/``deconv``/``dense`` module is its post-activation value.

The encoder's kernel sizes are :attr:`ModelConfig.encoder_kernels`, by default the paper's
:data:`PAPER_ENCODER_KERNELS` ``(4, 4, 2, 2)``: ``conv3`` and ``conv4`` have kernel 2, stride 2,
no padding (a kernel ``k`` gets padding ``(k - 2) / 2``, so every even kernel halves the side
and the shapes above hold for any). Checkpoints written before the field existed had kernel 4
throughout (:data:`LEGACY_ENCODER_KERNELS`); they load as that architecture.

The package holds one concept a module: ``names`` (the layer names above), ``config``
(:class:`ModelConfig`, :func:`check_images_fit`), ``blocks`` (the conv/dense layers with their
ReLU), ``encoder``, ``latent`` (:class:`Reparameterize`), ``decoder`` and ``vae``
(:class:`ConvVAE`, :class:`VAEOutput`, :func:`make_model`). Import from ``vae_zoo.models``.

References
----------
C. P. Burgess et al., "Understanding disentangling in β-VAE", 2018.
F. Locatello et al., "Challenging common assumptions in the unsupervised learning of
disentangled representations", ICML 2019 (``disentanglement_lib`` conv architecture).
L. Bonheme and M. Grześ, "How good are variational autoencoders at transfer learning?", 2023.
"""

from .config import (
    LEGACY_ENCODER_KERNELS,
    PAPER_ENCODER_KERNELS,
    SUPPORTED_SIZES,
    DatasetMismatchError,
    ModelConfig,
    check_images_fit,
)
from .decoder import Decoder
from .encoder import Encoder
from .latent import DECODE_FROM as DECODE_FROM
from .latent import DecodeFrom as DecodeFrom
from .latent import Reparameterize
from .names import DECODER_LAYERS, ENCODER_LAYERS, LATENT_LAYERS, LAYER_NAMES
from .vae import ConvVAE, VAEOutput, make_model

__all__ = [
    "DECODER_LAYERS",
    "ENCODER_LAYERS",
    "LATENT_LAYERS",
    "LAYER_NAMES",
    "LEGACY_ENCODER_KERNELS",
    "PAPER_ENCODER_KERNELS",
    "SUPPORTED_SIZES",
    "ConvVAE",
    "DatasetMismatchError",
    "Decoder",
    "Encoder",
    "ModelConfig",
    "Reparameterize",
    "VAEOutput",
    "check_images_fit",
    "make_model",
]
