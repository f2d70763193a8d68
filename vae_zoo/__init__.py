"""vae_zoo: a small VAE toolkit that reproduces Bonheme & Grześ (2023) with :mod:`cka_sim`.

*How good are variational autoencoders at transfer learning?* (arXiv 2304.10767) claims that
VAE encoders learn generic representations, decoders specific ones, and that this tells which
parts of a VAE to retrain when transferring it to a new dataset. ``python -m vae_zoo.study``
re-runs that study with measured verdicts.

Submodules: ``datasets`` (offline loaders and generators), ``models`` (the paper's conv VAE),
``train`` (a resumable trainer), ``transfer`` (transfer recipes), ``study`` (the reproduction).
``vae_zoo`` uses only the public API of :mod:`cka_sim`.
"""

__all__: list[str] = []
