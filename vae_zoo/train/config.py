"""What a training run is asked for and what it leaves: :class:`TrainConfig`, :class:`TrainResult`
and the names of the files of a run directory (see :mod:`vae_zoo.train`), including the kept
checkpoints' (:func:`snapshot_path`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..objectives import Objective, make_objective

__all__ = [
    "CONFIG_NAME",
    "METRICS_NAME",
    "RESULT_NAME",
    "TrainConfig",
    "TrainResult",
    "snapshot_path",
]

METRICS_NAME = "metrics.jsonl"
RESULT_NAME = "result.json"
CONFIG_NAME = "config.json"


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """Return the file of the checkpoint a run keeps at ``step`` (``TrainConfig.keep_checkpoints``).

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The run directory.
    step : int
        The kept step.

    Returns
    -------
    pathlib.Path
        ``run_dir / f"checkpoint-step{step}.pt"``; it holds what ``checkpoint.pt`` held at that
        step, and loads with :func:`vae_zoo.checkpoint.load_model`.

    Examples
    --------
    >>> from vae_zoo.train import snapshot_path
    >>> snapshot_path("runs/x", 750).as_posix()
    'runs/x/checkpoint-step750.pt'
    """
    return Path(run_dir) / f"checkpoint-step{int(step)}.pt"


@dataclass
class TrainConfig:
    """Settings of one training run.

    Parameters
    ----------
    steps : int, default 5000
        Total optimisation steps.
    batch_size : int, default 64
        Examples per step (drawn uniformly with replacement).
    lr : float, default 1e-4
        Adam learning rate (β = (0.9, 0.999), ε = 1e-8).
    seed : int, default 0
        Seeds the initialisation, batch indices and sampling noise.
    objective : str, default "beta_vae"
        A name in :data:`vae_zoo.objectives.OBJECTIVES`.
    objective_params : dict, optional
        Its hyper-parameters, e.g. ``{"beta": 4.0}``; by default the objective's defaults.
    latent_dim : int, default 10
        Latent size of a freshly built model.
    log_every : int, default 100
        Write averaged train loss terms every this many steps.
    eval_every : int, default 1000
        Evaluate the test loss every this many steps (0: only at the end and ``eval_at``).
    eval_at : tuple of int, default ()
        Extra steps at which to evaluate the test loss (0 means before the first step).
    eval_examples : int, default 2048
        Test examples used per evaluation (the first ones of the test set).
    checkpoint_every : int, default 500
        Write a checkpoint every this many steps (and always at the end).
    threads : int or None, default 1
        ``torch.set_num_threads`` during training (restored afterwards); None leaves it.
    device : str, default "cpu"
        ``"cpu"`` (deterministic) or ``"cuda"``.
    keep_checkpoints : tuple of int, default ()
        Steps (increasing, each in ``1..steps``) at which a copy of the checkpoint is also kept,
        as :func:`snapshot_path`; the test loss is evaluated at each of them too.

    Raises
    ------
    ValueError
        If a count is below 1 (``eval_every`` and ``eval_at`` below 0), ``keep_checkpoints`` is
        not increasing within ``1..steps``, or the objective's name or hyper-parameters are
        unknown.

    References
    ----------
    Kingma & Ba (2015), *Adam: A Method for Stochastic Optimization*, ICLR. Locatello et al.
    (2019), *Challenging Common Assumptions in the Unsupervised Learning of Disentangled
    Representations*, ICML (the training settings of ``disentanglement_lib``).

    Examples
    --------
    >>> from vae_zoo.train import TrainConfig
    >>> config = TrainConfig(steps=300, eval_every=100, eval_at=(0,), keep_checkpoints=(150,))
    >>> sorted(config.eval_steps()), TrainConfig.from_dict(config.to_dict()) == config
    ([0, 100, 150, 200, 300], True)
    """

    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-4
    seed: int = 0
    objective: str = "beta_vae"
    objective_params: dict[str, Any] = field(default_factory=dict)
    latent_dim: int = 10
    log_every: int = 100
    eval_every: int = 1000
    eval_at: tuple[int, ...] = ()
    eval_examples: int = 2048
    checkpoint_every: int = 500
    threads: int | None = 1
    device: str = "cpu"
    keep_checkpoints: tuple[int, ...] = ()

    #: Settings that must equal those of a checkpoint to resume from it. ``keep_checkpoints``
    #: is not one: like ``eval_at`` or ``checkpoint_every`` it changes what is written, never
    #: the training (evaluation draws no training randomness), so a run may be resumed or
    #: extended keeping other steps. A kept step the checkpoint has already passed must have
    #: its snapshot on disk, though: it cannot be written again (``ResumeMismatchError``).
    RESUME_KEYS = ("batch_size", "lr", "seed", "objective", "objective_params", "latent_dim")

    def __post_init__(self) -> None:
        self.eval_at = tuple(sorted({int(s) for s in self.eval_at}))
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or any(s < 0 for s in self.eval_at):
            raise ValueError("eval_every and eval_at must be >= 0")
        self.keep_checkpoints = _check_kept(self.keep_checkpoints, self.steps)
        make_objective(self.objective, **self.objective_params)  # validates name and params

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain, JSON-serialisable dict.

        Returns
        -------
        dict
            Field name to value; ``eval_at`` and ``keep_checkpoints`` as lists.
        """
        d = asdict(self)
        d["eval_at"] = list(self.eval_at)
        d["keep_checkpoints"] = list(self.keep_checkpoints)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from the dict form of :meth:`to_dict` (unknown keys are ignored).

        Parameters
        ----------
        d : dict
            Settings by field name.

        Returns
        -------
        TrainConfig
            The config, validated.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def build_objective(self) -> Objective:
        """Build the configured objective.

        Returns
        -------
        Objective
            ``make_objective(objective, **objective_params)``.
        """
        return make_objective(self.objective, **self.objective_params)

    def eval_steps(self) -> set[int]:
        """Return the steps after which the test loss is evaluated.

        Returns
        -------
        set of int
            Multiples of ``eval_every``, the ``eval_at`` steps up to ``steps``, the
            ``keep_checkpoints`` steps, and ``steps``.
        """
        periodic = (
            range(self.eval_every, self.steps + 1, self.eval_every) if self.eval_every else ()
        )
        eval_at = (s for s in self.eval_at if s <= self.steps)
        return {*periodic, *eval_at, *self.keep_checkpoints, self.steps}


def _check_kept(steps: Any, total: int) -> tuple[int, ...]:
    """``keep_checkpoints`` as a tuple of ints, or a ValueError: increasing, within 1..total."""
    try:
        if isinstance(steps, str | bytes) or any(int(s) != s for s in steps):
            raise ValueError
        kept = tuple(int(s) for s in steps)
    except (TypeError, ValueError):
        raise ValueError(
            f"TrainConfig.keep_checkpoints must be a sequence of integer steps; got {steps!r}"
        ) from None
    if any(s < 1 or s > total for s in kept) or any(a >= b for a, b in pairwise(kept)):
        raise ValueError(
            f"TrainConfig.keep_checkpoints must be increasing steps in 1..steps ({total}); "
            f"got {list(kept)}"
        )
    return kept


@dataclass
class TrainResult:
    """The outcome of one training run, as :func:`train` returns it.

    Parameters
    ----------
    out_dir : pathlib.Path
        The run directory.
    checkpoint : pathlib.Path
        Its ``checkpoint.pt``.
    step : int
        Steps done.
    complete : bool
        Whether ``step == config.steps``.
    train, test : dict
        The last train and test metrics lines (empty when none was written).
    resumed_from : int, optional
        The checkpoint step this call resumed from (None for a fresh start).

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import TrainConfig, train
    >>> data = load("dsprites", size=32, max_examples=64)
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> run = tempfile.mkdtemp()
    >>> result = train(data, run, config, progress=False)
    >>> result.step, result.complete, result.resumed_from
    (2, True, None)
    """

    out_dir: Path
    checkpoint: Path
    step: int
    complete: bool
    train: dict[str, Any]
    test: dict[str, Any]
    resumed_from: int | None = None
