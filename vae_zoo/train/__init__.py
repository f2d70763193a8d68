"""A resumable, deterministic trainer for :class:`~vae_zoo.models.ConvVAE`.

Training is step-based Adam (default: learning rate 1e-4, batch 64, as in the paper) on batches
of random indices drawn from the whole training set held in memory as ``uint8`` (no DataLoader,
no workers). A run directory holds:

``config.json``
    The training configuration, model architecture, data fingerprint and metadata.
``metrics.jsonl``
    One JSON object per line: ``{"step", "split": "train"|"test", "loss", "recon", "kl", ...}``;
    train lines average the loss terms since the previous train line.
``checkpoint.pt``
    The latest checkpoint (see :mod:`vae_zoo.checkpoint`), written atomically every
    ``checkpoint_every`` steps and at the end.
``checkpoint-step<N>.pt``
    A copy of the checkpoint at each step ``N`` of ``TrainConfig.keep_checkpoints``
    (:func:`snapshot_path`), written atomically when training passes it (before the regular
    checkpoint of that step, so a run resumed past it keeps it); the test loss is evaluated
    at these steps too.
``result.json``
    Written last, when the run is complete; its presence marks a finished run.

Determinism and resume
----------------------
All randomness is seeded from ``TrainConfig.seed``: the model initialisation, the batch indices
(a NumPy ``Generator``) and the reparameterisation noise (a dedicated ``torch.Generator``). The
global torch, NumPy and Python RNGs are seeded too, and every one of these states is saved in
the checkpoint with the model and optimiser. Calling :func:`train` again on a run directory
resumes from its last checkpoint and, on the CPU, ends with the same parameters, bit for bit, as
an uninterrupted run; ``metrics.jsonl`` is cut back to the checkpoint's step first so no line is
duplicated. Evaluating the test loss draws its noise from its own generator and touches none of
these states, so where and how often it is evaluated (``eval_every``, ``eval_at``,
``keep_checkpoints``) does not change the trained parameters. Training uses ``threads`` torch
threads (default 1: on a small machine several single-thread processes give the best
throughput).

Command line::

    python -m vae_zoo.train --dataset dsprites --size 32 --steps 5000 --seed 0 --out runs/x
"""

try:
    import torch  # noqa: F401 - checked here so that a missing torch or tqdm gets the message below
    import tqdm.auto  # noqa: F401
except ImportError as _err:
    from .._extras import missing

    missing(_err, "vae_zoo.train")

# Not in __all__, but imported from here by vae_zoo.zoo and the tests: re-exported explicitly.
from .cli import HelpFormatter as HelpFormatter
from .cli import add_param_argument as add_param_argument
from .cli import add_schedule_arguments as add_schedule_arguments
from .cli import build_parser as build_parser
from .cli import main
from .config import CONFIG_NAME as CONFIG_NAME
from .config import METRICS_NAME, RESULT_NAME, TrainConfig, TrainResult, snapshot_path
from .evaluation import evaluate
from .log import read_metrics
from .loop import train
from .resume import ResumeMismatchError, data_fingerprint, is_complete

__all__ = [
    "METRICS_NAME",
    "RESULT_NAME",
    "ResumeMismatchError",
    "TrainConfig",
    "TrainResult",
    "data_fingerprint",
    "evaluate",
    "is_complete",
    "main",
    "read_metrics",
    "snapshot_path",
    "train",
]
