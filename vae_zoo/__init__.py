"""vae_zoo: a small VAE toolkit that reproduces Bonheme & Grześ (2023) with :mod:`cka_sim`.

*How good are variational autoencoders at transfer learning?* (arXiv 2304.10767) claims that
VAE encoders learn generic representations, decoders specific ones, and that this tells which
parts of a VAE to retrain when transferring it to a new dataset. ``python -m vae_zoo.study``
re-runs that study with measured verdicts.

Submodules: ``datasets`` (offline loaders and generators), ``models`` (the paper's conv VAE),
``objectives`` (β-VAE, β-TCVAE, Annealed VAE, DIP-VAE-II), ``train`` (a resumable trainer,
``python -m vae_zoo.train``), ``zoo`` (a grid of runs over worker processes), ``checkpoint``
(atomic, checked checkpoints), ``storage`` (atomic writes, checksums, directory locks),
``transfer`` (transfer recipes) and ``study`` (the reproduction, ``python -m vae_zoo.study``).
``vae_zoo`` uses only the public API of :mod:`cka_sim`.
"""

__all__: list[str] = []
