"""Transfer a trained VAE to a target dataset with a named recipe.

A recipe names the *components* (module names of :class:`~vae_zoo.models.ConvVAE`, such as
``"encoder"``, ``"encoder.mu"`` or ``"decoder.dense1"``) that are trained and those that are
re-initialised; every other parameter is frozen. A component covers every parameter whose name
starts with it followed by a dot, so ``"decoder"`` covers ``decoder.deconv1.weight`` and the rest.

=============  =============================================  ====================================
recipe         trained                                        re-initialised
=============  =============================================  ====================================
``decoder``    decoder (encoder frozen)                       nothing
``encoder``    encoder, with mu and logvar (decoder frozen)   nothing
``all``        everything                                     nothing
``paper``      encoder.mu, encoder.logvar, decoder.dense1     the same three layers
``scratch``    everything                                     everything (random init, same budget)
=============  =============================================  ====================================

``paper`` is the default recipe of Bonheme & Grześ (2023); ``scratch`` is the baseline a recipe
must beat. Every recipe is trained with the same :class:`~vae_zoo.train.TrainConfig` (so the same
step budget), and the run records which parameters were trained, re-initialised and frozen in
``transfer.json``, ``config.json`` and the checkpoint. Re-initialisation uses each layer's own
``reset_parameters`` (PyTorch's default init) under a seed, so it is reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_model, read_checkpoint, resolve_checkpoint, write_json_atomic
from .datasets.base import ImageDataset
from .models import ConvVAE, check_images_fit
from .train import (
    ResumeMismatchError,
    TrainConfig,
    TrainResult,
    data_fingerprint,
    read_metrics,
    train,
)

__all__ = [
    "RECIPES",
    "TRANSFER_NAME",
    "Recipe",
    "TransferResult",
    "apply_recipe",
    "get_recipe",
    "transfer",
]

TRANSFER_NAME = "transfer.json"


def _covers(component: str, name: str) -> bool:
    """Whether the parameter or module ``name`` lies inside ``component``."""
    return name == component or name.startswith(component + ".")


@dataclass(frozen=True)
class Recipe:
    """Which components of a source model are trained and which are re-initialised.

    Parameters
    ----------
    name : str
        Recipe name.
    train : tuple of str
        Components (module names) whose parameters are optimised; all others are frozen.
    reinit : tuple of str, default ()
        Components re-initialised before training; each must lie inside a trained component.
    description : str, default ""
        One line for reports.

    Raises
    ------
    ValueError
        If a re-initialised component is not inside a trained one.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the recipes compared); Locatello et al. (2019), ICML
    (``disentanglement_lib``'s transfer default: the ``"paper"`` recipe).

    Examples
    --------
    >>> from vae_zoo.transfer import RECIPES, Recipe
    >>> sorted(RECIPES)
    ['all', 'decoder', 'encoder', 'paper', 'scratch']
    >>> Recipe("heads", train=("encoder.mu", "encoder.logvar"), reinit=("encoder.mu",)).train
    ('encoder.mu', 'encoder.logvar')
    """

    name: str
    train: tuple[str, ...]
    reinit: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        for component in self.reinit:
            if not any(_covers(t, component) for t in self.train):
                raise ValueError(
                    f"recipe {self.name!r} re-initialises {component!r} but does not train it; "
                    "a re-initialised component must be trained"
                )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "decoder", train=("decoder",), description="freeze the encoder, retrain the decoder"
        ),
        Recipe(
            "encoder", train=("encoder",), description="freeze the decoder, retrain the encoder"
        ),
        Recipe("all", train=("encoder", "decoder"), description="fine-tune everything"),
        Recipe(
            "paper",
            train=("encoder.mu", "encoder.logvar", "decoder.dense1"),
            reinit=("encoder.mu", "encoder.logvar", "decoder.dense1"),
            description="re-initialise mu, logvar and the decoder's first dense layer; "
            "freeze everything else (Bonheme & Grześ 2023)",
        ),
        Recipe(
            "scratch",
            train=("encoder", "decoder"),
            reinit=("encoder", "decoder"),
            description="train from a random initialisation with the same budget (baseline)",
        ),
    )
}
"""The recipes by name: ``decoder``, ``encoder``, ``all``, ``paper``, ``scratch``."""


def get_recipe(recipe: str | Recipe) -> Recipe:
    """Return a :class:`Recipe` by name (or the recipe itself).

    Parameters
    ----------
    recipe : str or Recipe
        A name in :data:`RECIPES`, or a recipe, returned as it is.

    Returns
    -------
    Recipe
        The recipe.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the recipes.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the recipes compared); Locatello et al. (2019), ICML
    (``disentanglement_lib``'s transfer default: the ``"paper"`` recipe).

    Examples
    --------
    >>> from vae_zoo.transfer import get_recipe
    >>> get_recipe("decoder").train
    ('decoder',)
    """
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}") from None


def _check_components(model: ConvVAE, components: Iterable[str], recipe: Recipe) -> None:
    modules = {name: m for name, m in model.named_modules() if any(True for _ in m.parameters())}
    for component in components:
        if component not in modules:
            with_params = sorted(name for name in modules if name)
            raise ValueError(
                f"recipe {recipe.name!r} names component {component!r}, which is not a module "
                f"with parameters of the model; components are {with_params}"
            )


def apply_recipe(model: ConvVAE, recipe: str | Recipe, *, seed: int = 0) -> dict[str, list[str]]:
    """Re-initialise the recipe's components in place and sort the parameters.

    Parameters
    ----------
    model : ConvVAE
        The source model (modified in place).
    recipe : str or Recipe
        A name in :data:`RECIPES` or a custom :class:`Recipe`.
    seed : int, default 0
        Seed of the re-initialisation (the global torch RNG is left untouched).

    Returns
    -------
    dict
        ``{"trainable": [...], "reinitialised": [...], "frozen": [...]}``, parameter names in
        ``named_parameters`` order. Nothing is frozen here: pass ``trainable`` to the trainer.

    Raises
    ------
    ValueError
        For an unknown recipe name, or a component that is not a module with parameters of the
        model.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the recipes compared); Locatello et al. (2019), ICML
    (``disentanglement_lib``'s transfer default: the ``"paper"`` recipe).

    Examples
    --------
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.transfer import apply_recipe
    >>> parts = apply_recipe(make_model(size=32, seed=0), "decoder")
    >>> all(name.startswith("decoder.") for name in parts["trainable"]), parts["reinitialised"]
    (True, [])
    """
    recipe = get_recipe(recipe)
    _check_components(model, (*recipe.train, *recipe.reinit), recipe)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in model.named_modules():
            if any(_covers(c, name) for c in recipe.reinit) and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    names = [name for name, _ in model.named_parameters()]
    trainable = [n for n in names if any(_covers(c, n) for c in recipe.train)]
    return {
        "trainable": trainable,
        "reinitialised": [n for n in names if any(_covers(c, n) for c in recipe.reinit)],
        "frozen": [n for n in names if n not in trainable],
    }


@dataclass
class TransferResult:
    """The outcome of one transfer run, as :func:`transfer` returns it.

    Parameters
    ----------
    recipe : str
        Recipe name.
    out_dir, checkpoint : pathlib.Path
        The run directory and its ``checkpoint.pt``.
    trainable, reinitialised, frozen : list of str
        Parameter names.
    test_loss : dict
        Target test loss (``loss`` term) at each evaluated step, ``{step: loss}``.
    train : TrainResult
        The underlying training run.
    """

    recipe: str
    out_dir: Path
    checkpoint: Path
    trainable: list[str]
    reinitialised: list[str]
    frozen: list[str]
    test_loss: dict[int, float]
    train: TrainResult


def transfer(
    source: str | Path,
    target: ImageDataset,
    recipe: str | Recipe,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    test_data: ImageDataset | None = None,
    eval_budgets: Sequence[int] = (),
    progress: bool = True,
) -> TransferResult:
    """Fine-tune the model in ``source`` on ``target`` with a recipe; resumable like :func:`train`.

    Parameters
    ----------
    source : str or Path
        Source checkpoint (``checkpoint.pt`` or its run directory).
    target : ImageDataset
        Target training images; must have the source model's channels and size.
    recipe : str or Recipe
        ``"decoder"``, ``"encoder"``, ``"all"``, ``"paper"``, ``"scratch"`` or a custom recipe.
    out_dir : str or Path
        Run directory of the transfer.
    config : TrainConfig, optional
        Training settings; default: the source run's settings (objective, steps, batch, lr,
        seed). Use the same config for every recipe to compare them at the same budget.
    test_data : ImageDataset, optional
        Target test images; the test loss is evaluated at ``eval_budgets`` (and as configured).
    eval_budgets : sequence of int, default ()
        Steps at which to record the target test loss (0 = before fine-tuning).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    TransferResult
        The recipe, the parameters trained, re-initialised and frozen, the target test loss at
        each evaluated step, and the training run.

    Raises
    ------
    CheckpointNotFoundError, CheckpointError, ArchitectureMismatchError
        For a missing, corrupt or mismatched source checkpoint.
    DatasetMismatchError
        When the target's channels or size differ from the source model's.
    ResumeMismatchError
        When ``out_dir`` holds a transfer from another source or with another recipe.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import TrainConfig, train
    >>> from vae_zoo.transfer import transfer
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> source = load("dsprites", size=32, max_examples=64)
    >>> _ = train(source, root / "source", config, progress=False)
    >>> target = load("mnist", size=32, max_examples=64)  # doctest: +SKIP
    >>> result = transfer(root / "source", target, "decoder", root / "to-mnist", config,
    ...                   progress=False)  # doctest: +SKIP
    >>> result.recipe, result.frozen[0]  # doctest: +SKIP
    ('decoder', 'encoder.conv1.weight')
    """
    recipe = get_recipe(recipe)
    out = Path(out_dir)
    source_file, payload, model = _load_source(source, target, test_data)
    config = _transfer_config(config, payload, model.config.latent_dim, eval_budgets)
    record = _source_record(source_file, payload, recipe)
    _check_existing(out, record)
    record.update(apply_recipe(model, recipe, seed=config.seed))
    result = _fine_tune(target, out, config, model, record, test_data, progress)
    test_loss = {int(r["step"]): float(r["loss"]) for r in read_metrics(out, "test")}
    _write_transfer_json(out, record, config, target, test_loss, result)
    return _transfer_result(recipe, out, record, test_loss, result)


def _load_source(
    source: str | Path, target: ImageDataset, test_data: ImageDataset | None
) -> tuple[Path, dict[str, Any], ConvVAE]:
    """The source checkpoint's path, payload and model (in training mode), checked to fit the
    target images."""
    source_file = resolve_checkpoint(source)
    payload = read_checkpoint(source_file)
    model = load_model(source_file).train()
    check_images_fit(model.config, target.channels, target.size, dataset=target.name)
    if test_data is not None:
        check_images_fit(model.config, test_data.channels, test_data.size, dataset=test_data.name)
    return source_file, payload, model


def _transfer_config(
    config: TrainConfig | None,
    payload: dict[str, Any],
    latent_dim: int,
    eval_budgets: Sequence[int],
) -> TrainConfig:
    """``config`` (default: the source run's), with the source model's latent size and the
    evaluation budgets added to ``eval_at``."""
    if config is None:
        config = TrainConfig.from_dict(payload["train_config"])
    return dataclasses.replace(
        config,
        latent_dim=latent_dim,
        eval_at=tuple(sorted({*config.eval_at, *eval_budgets})),
    )


def _source_record(source_file: Path, payload: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """What a transfer records about its source and recipe (checked again on resume)."""
    return {
        "source": str(source_file.resolve()),
        "source_data": payload.get("data"),
        "source_step": payload.get("step"),
        "source_seed": payload.get("train_config", {}).get("seed"),
        "source_objective": payload.get("train_config", {}).get("objective"),
        "recipe": recipe.name,
        "recipe_train": list(recipe.train),
        "recipe_reinit": list(recipe.reinit),
        "description": recipe.description,
    }


def _fine_tune(
    target: ImageDataset,
    out: Path,
    config: TrainConfig,
    model: ConvVAE,
    record: dict[str, Any],
    test_data: ImageDataset | None,
    progress: bool,
) -> TrainResult:
    """Train ``model`` on ``target``, only the parameters ``record`` names as trainable."""
    return train(
        target,
        out,
        config,
        test_data=test_data,
        init_model=model,
        trainable=record["trainable"],
        reinitialised=record["reinitialised"],
        metadata={"transfer": record},
        progress=progress,
    )


def _write_transfer_json(
    out: Path,
    record: dict[str, Any],
    config: TrainConfig,
    target: ImageDataset,
    test_loss: dict[int, float],
    result: TrainResult,
) -> None:
    """Write ``transfer.json`` (the record, the target data and the losses) once the run is
    complete; an interrupted run writes nothing."""
    if not result.complete:
        return
    write_json_atomic(
        out / TRANSFER_NAME,
        {
            **record,
            "steps": config.steps,
            "target_data": data_fingerprint(target),
            "test_loss": {str(k): v for k, v in test_loss.items()},
            "final_train": result.train,
            "final_test": result.test,
        },
    )


def _transfer_result(
    recipe: Recipe,
    out: Path,
    record: dict[str, Any],
    test_loss: dict[int, float],
    result: TrainResult,
) -> TransferResult:
    """The :class:`TransferResult` of a transfer run whose parameter lists are in ``record``."""
    return TransferResult(
        recipe=recipe.name,
        out_dir=out,
        checkpoint=result.checkpoint,
        trainable=record["trainable"],
        reinitialised=record["reinitialised"],
        frozen=record["frozen"],
        test_loss=test_loss,
        train=result,
    )


def _check_existing(out: Path, record: dict[str, Any]) -> None:
    """Refuse to resume a transfer directory that holds another source or recipe."""
    if not resolve_checkpoint(out).is_file():
        return
    stored = read_checkpoint(out).get("metadata", {}).get("transfer")
    if stored is None:
        raise ResumeMismatchError(
            f"{out} holds a training run, not a transfer: use another output directory"
        )
    for key in (
        "recipe",
        "recipe_train",
        "recipe_reinit",
        "source_data",
        "source_step",
        "source_seed",
        "source_objective",
    ):
        if stored.get(key) != record[key]:
            raise ResumeMismatchError(
                f"{out} holds a transfer with {key}={stored.get(key)!r}, not {record[key]!r}: "
                "use another output directory"
            )
