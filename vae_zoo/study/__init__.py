"""The reproduction of Bonheme & Grześ (2023): ``python -m vae_zoo.study``.

Stages (each resumable): train the zoo, measure CKA between all models on each dataset's
held-out images, transfer every model to every other dataset with each recipe, fit linear
probes, then compute the four verdicts with :mod:`vae_zoo.study.criteria` and write
``results.json``, ``report.md`` and ``figures/``.
"""

try:
    from .config import StudyConfig, quick_config
    from .run import run_study
except ImportError as _err:  # torch, tqdm, matplotlib or scikit-learn is not installed
    from .._extras import missing

    missing(_err, "vae_zoo.study")

__all__ = ["StudyConfig", "quick_config", "run_study"]
