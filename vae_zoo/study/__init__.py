"""The reproduction of Bonheme & Grześ (2023): ``python -m vae_zoo.study``.

Stages (each resumable): train the zoo (every model from its own initialisation), measure CKA,
debiased, biased and deconfounded, between all models on each dataset's stratified evaluation
set, run claim 3's freeze-depth sweep and claim 4's transfers against scratch, fit linear
probes, then compute the four verdicts with the versioned rules of
:mod:`vae_zoo.study.criteria` (intervals from the model-level bootstrap of
:mod:`vae_zoo.study.bootstrap`) and write ``results.json``, ``report.md`` and ``figures/``.
"""

try:
    from .config import StudyConfig, quick_config
    from .run import run_study
except ImportError as _err:  # torch, tqdm, matplotlib or scikit-learn is not installed
    from .._extras import missing

    missing(_err, "vae_zoo.study")

__all__ = ["StudyConfig", "quick_config", "run_study"]
