"""Settings of the study, with the default and ``--quick`` presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: Encoder and decoder layers at the same distance from the latent bottleneck, nearest first:
#: each pair has the same output shape (at 32 px: 256, 256, 64x4x4, 32x8x8, 32x16x16 values).
#: Claims 1 and 2 average over these layers, so encoders and decoders are compared at matched
#: depth. The input and output (images), and the 10-unit latent heads, have no mirror.
DEPTH_PAIRS: tuple[tuple[str, str], ...] = (
    ("encoder.dense", "decoder.dense1"),
    ("encoder.conv4", "decoder.dense2"),
    ("encoder.conv3", "decoder.deconv1"),
    ("encoder.conv2", "decoder.deconv2"),
    ("encoder.conv1", "decoder.deconv3"),
)
ENCODER_CLAIM_LAYERS: tuple[str, ...] = tuple(e for e, _ in reversed(DEPTH_PAIRS))
DECODER_CLAIM_LAYERS: tuple[str, ...] = tuple(d for _, d in DEPTH_PAIRS)

RECIPES: tuple[str, ...] = ("decoder", "encoder", "all", "paper", "scratch")

#: Encoder blocks in forward order: the freeze-depth sweep's recipe ``freeze{k}`` reuses the whole
#: source encoder, freezes its first ``k`` blocks and fine-tunes the rest; the decoder is always
#: re-initialised and trained. ``freeze0`` freezes nothing, ``freeze6`` the whole encoder.
ENCODER_BLOCKS: tuple[tuple[str, ...], ...] = (
    ("encoder.conv1",),
    ("encoder.conv2",),
    ("encoder.conv3",),
    ("encoder.conv4",),
    ("encoder.dense",),
    ("encoder.mu", "encoder.logvar"),
)
SWEEP_RECIPES: tuple[str, ...] = tuple(f"freeze{k}" for k in range(len(ENCODER_BLOCKS) + 1))
#: Claim 3's graded test (rules version 4): freeze depths 0-5 on every ordered pair of datasets
#: (``freeze6``, the whole encoder with its heads, is in the long curves only).
GRADED_DEPTHS: tuple[int, ...] = tuple(range(len(ENCODER_BLOCKS)))

#: Settings that change how fast the study runs but not its results (every training process
#: uses one thread whatever the worker count): a study directory may be resumed with others.
RESULT_NEUTRAL: frozenset[str] = frozenset({"workers"})


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines one run of the study.

    Parameters
    ----------
    datasets : tuple of str, default ('dsprites', 'mnist', 'fashion_mnist', 'animals', 'digits')
        Greyscale datasets of the zoo (every ordered pair is a transfer).
    size : int, default 32
        Image side, 32 or 64 (the paper's).
    seeds : tuple of int, default (0, 1, 2)
        Seeds of the zoo (at least two: the same-dataset ceiling). Each model's initialisation
        and training seed is derived from (dataset, seed), so no two models share one.
    random_models : int, default 8
        Untrained (random-init) baseline models: the floor of every comparison.
    objective : str, default 'beta_vae'
        VAE objective of every zoo model (default β-VAE with β = 1, a plain VAE).
    objective_params : dict, optional
        Its hyper-parameters; by default ``{"beta": 1.0}``.
    train_steps : int, default 3000
        Optimisation steps of each zoo model.
    training_lengths : tuple of int, default (750, 1500, 3000)
        Steps of the zoo runs at which a checkpoint is kept and CKA is measured (the training-
        length check: the same runs, no extra training); increasing, the last ``train_steps``.
    train_examples : int or None, default 20000
        Cap on each dataset's training split (None: all of it).
    transfer_steps : int, default 2400
        Step budget of claim 3's long curves on ``sweep_pairs`` (a secondary reading).
    transfer_budgets : tuple of int, default (0, 600, 1200, 2400)
        Steps at which the long curves record the target test loss (0 = before fine-tuning).
    long_depths : tuple of int, default (0, 3, 6)
        Freeze depths of the long curves (beside ``recipes``).
    sweep_steps : int, default 600
        Budget of claim 3's graded test: freeze depths ``GRADED_DEPTHS`` (0-5) and ``paper`` on
        every ordered (source, target) pair, scored against the target's scratch models of
        claim 4 (the same budget).
    tie_repeats : int, default 2
        Extra training seeds of one sweep recipe (``freeze2``, from the first other dataset)
        per target, for the tie band: the seed noise of a recipe.
    transfer_examples : int or None, default 1000
        Training images of the target in every transfer (the data-scarce setting; None: the
        training split, capped at ``train_examples``).
    sweep_pairs : tuple of (str, str), default (('mnist', 'digits'), ('fashion_mnist', 'mnist'))
        (source, target) pairs of claim 3's long curves.
    transfer_source_seed : int, default 0
        Zoo seed whose models are the sources of claim 3 (the graded test and the long curves).
    check_source_seeds : tuple of int, default (0, 1, 2)
        Zoo seeds whose models are claim 4's sources: its score and gain are means over them.
    recipes : tuple of str, default ('paper', 'all', 'scratch')
        Recipes run beside the sweep (see :mod:`vae_zoo.transfer`); ``scratch`` runs once per
        sweep target.
    check_steps : int, default 600
        Fine-tuning budget of claim 4: every source transferred to every target with ``all``,
        against ``scratch`` at the same budget.
    scratch_seeds : int, default 5
        Scratch models per target at ``check_steps`` (each its own seed; their mean is the
        baseline of claim 4's gain and of claim 3's graded test, so ``sweep_steps`` must equal
        ``check_steps``).
    cka_examples : int, default 500
        Held-out, de-duplicated test examples of each dataset fed to every model for CKA, drawn
        as a seeded sample stratified by label (fewer where a test split has fewer distinct
        images, as ``digits`` with 359).
    half_samples : int, default 10
        Random halves of those examples, for the example-level part of the intervals.
    probe_train_examples : int, default 2000
        Target examples of the linear probes, train split.
    probe_test_examples : int, default 1000
        Target examples of the linear probes, test split.
    bootstrap_resamples : int, default 2000
        Resamples of every bootstrap interval.
    confidence_level : float, default 0.95
        Of every interval.
    workers : int, default 2
        Worker processes for training (one thread each).
    device : str, default 'cpu'
        ``"cpu"`` or ``"cuda"`` (training and activations).
    test_examples : int, default 1000
        Test examples of each evaluation of the test loss during training and transfer.

    Raises
    ------
    ValueError
        For fewer than two datasets, seeds, random models or scratch seeds, a transfer source
        seed outside ``seeds``, unknown recipes or none called ``scratch``, fewer than 16 CKA
        examples, a confidence level outside (0, 1), budgets beyond ``transfer_steps``, sweep
        pairs that are not two different datasets of the zoo, training lengths that do not
        increase to ``train_steps``, claim-4 source seeds outside ``seeds``, ``sweep_steps``
        other than ``check_steps``, or long-curve depths outside 0-6.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the study these settings reproduce).

    Examples
    --------
    >>> from vae_zoo.study import StudyConfig, quick_config
    >>> config = quick_config(seeds=(0, 1))
    >>> config.datasets, StudyConfig.from_dict(config.to_dict()) == config
    (('dsprites', 'mnist', 'animals', 'digits'), True)
    """

    datasets: tuple[str, ...] = ("dsprites", "mnist", "fashion_mnist", "animals", "digits")
    size: int = 32
    seeds: tuple[int, ...] = (0, 1, 2)
    random_models: int = 8
    objective: str = "beta_vae"
    objective_params: dict[str, Any] = field(default_factory=lambda: {"beta": 1.0})
    train_steps: int = 3000
    training_lengths: tuple[int, ...] = (750, 1500, 3000)
    train_examples: int | None = 20000
    transfer_steps: int = 2400
    transfer_budgets: tuple[int, ...] = (0, 600, 1200, 2400)
    long_depths: tuple[int, ...] = (0, 3, 6)
    sweep_steps: int = 600
    tie_repeats: int = 2
    transfer_examples: int | None = 1000
    sweep_pairs: tuple[tuple[str, str], ...] = (("mnist", "digits"), ("fashion_mnist", "mnist"))
    transfer_source_seed: int = 0
    check_source_seeds: tuple[int, ...] = (0, 1, 2)
    recipes: tuple[str, ...] = ("paper", "all", "scratch")
    check_steps: int = 600
    scratch_seeds: int = 5
    cka_examples: int = 500
    half_samples: int = 10
    probe_train_examples: int = 2000
    probe_test_examples: int = 1000
    bootstrap_resamples: int = 2000
    confidence_level: float = 0.95
    workers: int = 2
    device: str = "cpu"
    test_examples: int = 1000

    def __post_init__(self) -> None:
        if len(self.datasets) < 2:
            raise ValueError(f"the study needs at least two datasets; got {self.datasets}")
        if len(self.seeds) < 2:
            raise ValueError(
                f"the study needs at least two seeds (same-dataset baseline); got {self.seeds}"
            )
        if self.transfer_source_seed not in self.seeds:
            raise ValueError(
                f"transfer_source_seed {self.transfer_source_seed} is not one of seeds {self.seeds}"
            )
        unknown = sorted(set(self.recipes) - set(RECIPES))
        if unknown:
            raise ValueError(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
        if "scratch" not in self.recipes:
            raise ValueError(
                "recipes must include 'scratch', the baseline every recipe is scored against"
            )
        if self.random_models < 2:
            raise ValueError(
                f"random_models must be at least 2 (the floor is resampled); got {self.random_models}"
            )
        if self.cka_examples < 16:
            raise ValueError(f"cka_examples must be at least 16; got {self.cka_examples}")
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence_level must be in (0, 1); got {self.confidence_level}")
        if max(self.transfer_budgets, default=0) > self.transfer_steps:
            raise ValueError("transfer_budgets must not exceed transfer_steps")
        for pair in self.sweep_pairs:
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(self.datasets):
                raise ValueError(
                    f"sweep_pairs must be (source, target) pairs of two different datasets of "
                    f"the zoo {self.datasets}; got {pair}"
                )
        if self.scratch_seeds < 2:
            raise ValueError(f"scratch_seeds must be at least 2; got {self.scratch_seeds}")
        lengths = self.training_lengths
        if not lengths or list(lengths) != sorted(set(lengths)) or lengths[0] < 1:
            raise ValueError(f"training_lengths must be increasing positive steps; got {lengths}")
        if lengths[-1] != self.train_steps:
            raise ValueError(
                f"the last of training_lengths {lengths} must be train_steps ({self.train_steps})"
            )
        if not set(self.check_source_seeds) <= set(self.seeds) or not self.check_source_seeds:
            raise ValueError(
                f"check_source_seeds {self.check_source_seeds} must be seeds of the zoo {self.seeds}"
            )
        if self.sweep_steps != self.check_steps:
            raise ValueError(
                f"sweep_steps ({self.sweep_steps}) must equal check_steps ({self.check_steps}): "
                "claim 3's graded test is scored against claim 4's scratch models"
            )
        if not set(self.long_depths) <= set(range(len(ENCODER_BLOCKS) + 1)):
            raise ValueError(f"long_depths must be freeze depths 0-6; got {self.long_depths}")
        if self.tie_repeats < 0:
            raise ValueError(f"tie_repeats must be at least 0; got {self.tie_repeats}")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings in JSON-serialisable form (recorded in ``results.json``).

        Returns
        -------
        dict
            Field name to value.
        """
        return dataclasses.asdict(self)

    def differs_from(self, saved: dict[str, Any]) -> list[str]:
        """List the result-changing settings whose values differ from a saved configuration.

        Parameters
        ----------
        saved : dict
            A :meth:`to_dict`, e.g. from an earlier run's ``results.json``.

        Returns
        -------
        list of str
            The differing setting names, sorted; settings that do not change results (such as
            ``workers``) are left out.
        """
        current = json.loads(json.dumps(self.to_dict()))
        keys = (set(current) | set(saved)) - RESULT_NEUTRAL
        return sorted(key for key in keys if saved.get(key) != current.get(key))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        """Build a configuration from the dict form of :meth:`to_dict`.

        Parameters
        ----------
        data : dict
            Settings by field name; lists are turned back into tuples.

        Returns
        -------
        StudyConfig
            The configuration, validated.
        """
        tuples = {f.name for f in dataclasses.fields(cls) if str(f.type).startswith("tuple")}
        out = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        if "sweep_pairs" in out:
            out["sweep_pairs"] = tuple(tuple(p) for p in out["sweep_pairs"])
        return cls(**out)


def quick_config(**overrides: Any) -> StudyConfig:
    """The whole pipeline at toy size; its verdicts may be inconclusive.

    How long it takes, measured: the README's "How long it takes".

    It uses the four datasets that need nothing beyond ``pip install "cka-sim[zoo]"``.

    Parameters
    ----------
    **overrides : Any
        Settings that replace the toy ones.

    Returns
    -------
    StudyConfig
        The configuration of ``python -m vae_zoo.study --quick``.

    Raises
    ------
    ValueError
        If the overrides make an invalid configuration (see :class:`StudyConfig`).

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767.

    Examples
    --------
    >>> from vae_zoo.study import quick_config
    >>> quick_config().train_steps, quick_config(train_steps=300).train_steps
    (150, 300)
    """
    settings: dict[str, Any] = {
        # the datasets that every pip install has (Fashion-MNIST needs a system package)
        "datasets": ("dsprites", "mnist", "animals", "digits"),
        "random_models": 4,
        "train_steps": 150,
        "training_lengths": (38, 75, 150),
        "train_examples": 2000,
        "transfer_steps": 40,
        "transfer_budgets": (0, 20, 40),
        "long_depths": (0, 6),
        "sweep_steps": 20,
        "tie_repeats": 1,
        "transfer_examples": 300,
        "sweep_pairs": (("mnist", "digits"),),
        "check_source_seeds": (0, 1),
        "check_steps": 20,
        "scratch_seeds": 2,
        "cka_examples": 128,
        "half_samples": 6,
        "probe_train_examples": 300,
        "probe_test_examples": 200,
        "bootstrap_resamples": 300,
        "test_examples": 128,
    }
    settings.update(overrides)
    return StudyConfig(**settings)
