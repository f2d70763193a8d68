"""Write the API reference pages (``docs/api/*.rst``) from the modules' ``__all__``.

Each page groups a module's public names into the sections below. A public name that no section
lists still gets documented, under "Other public names", so a name added to ``__all__`` is never
missing from the site; move it into its section when convenient.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path
from typing import Any

# (module, page title, intro, [(section title, [names]) or (section title, [names], home)]).
# A section with a ``home`` lists names the module re-exports from ``home``, where they are
# documented; it links to them there instead of documenting them twice.
PAGES: list[tuple[str, str, str, list[tuple[str, list[str]]]]] = [
    (
        "cka_sim",
        "cka_sim: CKA and HSIC",
        "The core: pure functions on NumPy arrays and torch tensors, the streaming and minibatch "
        "accumulators, and the result type. ``import cka_sim`` imports neither torch nor "
        "matplotlib.",
        [
            ("CKA of activations", ["linear_cka", "kernel_cka", "cka_matrix"]),
            (
                "Other similarity measures",
                [
                    "deconfounded_cka",
                    "deconfounded_cka_from_grams",
                    "procrustes_similarity",
                    "procrustes_distance",
                ],
            ),
            ("CKA and HSIC of Gram matrices", ["cka", "hsic"]),
            ("Gram matrices", ["gram_linear", "gram_rbf", "gram_polynomial", "center_gram"]),
            ("Over batches", ["StreamingCKA", "StreamingCKAMatrix", "MinibatchCKA"]),
            (
                "Statistics",
                ["permutation_test", "bootstrap_ci", "cka_matrix_with_uncertainty"],
                "cka_sim.stats",
            ),
            ("Results and warnings", ["CKAResult", "CKAUndefinedWarning"]),
        ],
    ),
    (
        "cka_sim.stats",
        "cka_sim.stats: permutation tests and intervals",
        "Is a similarity more than chance, and how precisely is it known? See the "
        ":doc:`statistics guide </statistics>`.",
        [
            ("Tests and intervals", ["permutation_test", "bootstrap_ci"]),
            ("Every layer pair", ["cka_matrix_with_uncertainty"]),
            ("Results", ["PermutationTestResult", "BootstrapResult", "ConfidenceInterval"]),
        ],
    ),
    (
        "cka_sim.torch",
        "cka_sim.torch: PyTorch models",
        "Layer capture by exact module name and layer x layer comparison of two models over a "
        "DataLoader (the ``torch`` extra). See the :doc:`model comparison guide "
        "</model_comparison>`.",
        [
            ("Comparing models", ["compare_models", "default_layers"]),
            ("Recording activations", ["record_activations", "ActivationStore"]),
            ("Inputs and outputs of a layer", ["extract_inputs", "first_tensor"]),
            ("Warnings", ["LayerCalledTwiceWarning"]),
        ],
    ),
    (
        "cka_sim.plot",
        "cka_sim.plot: figures",
        "Heatmaps and layer curves of a :class:`~cka_sim.CKAResult` (the ``plot`` extra).",
        [("Figures", ["heatmap", "layer_curve"])],
    ),
    (
        "vae_zoo.datasets",
        "vae_zoo.datasets: image datasets",
        "Offline loaders and generators. See the :doc:`datasets guide </datasets>`.",
        [
            ("Loading", ["load", "available", "names", "ImageDataset", "Availability"]),
            ("Constants", ["DATASETS", "NATIVE_SIZE", "TEST_FRACTION"]),
            ("Errors", ["DatasetNotAvailableError", "ChecksumError"]),
        ],
    ),
    (
        "vae_zoo.models",
        "vae_zoo.models: the convolutional VAE",
        "The VAE of Locatello et al. and Burgess et al. See the :doc:`vae_zoo guide </vae_zoo>`.",
        [
            ("Building a model", ["make_model", "ModelConfig", "check_images_fit"]),
            ("Modules", ["ConvVAE", "Encoder", "Decoder", "Reparameterize", "VAEOutput"]),
            (
                "Layer names",
                [
                    "LAYER_NAMES",
                    "ENCODER_LAYERS",
                    "LATENT_LAYERS",
                    "DECODER_LAYERS",
                    "SUPPORTED_SIZES",
                ],
            ),
            ("Errors", ["DatasetMismatchError"]),
        ],
    ),
    (
        "vae_zoo.objectives",
        "vae_zoo.objectives: training objectives",
        "β-VAE, β-TCVAE, Annealed VAE and DIP-VAE-II, and their building blocks.",
        [
            (
                "Objectives",
                [
                    "make_objective",
                    "OBJECTIVES",
                    "Objective",
                    "BetaVAE",
                    "BetaTCVAE",
                    "AnnealedVAE",
                    "DIPVAEII",
                ],
            ),
            (
                "Terms",
                [
                    "bernoulli_nll",
                    "gaussian_kl",
                    "log_normal",
                    "total_correlation_mws",
                    "aggregate_posterior_covariance",
                ],
            ),
        ],
    ),
    (
        "vae_zoo.train",
        "vae_zoo.train: the trainer",
        "A resumable, deterministic trainer (``python -m vae_zoo.train``).",
        [
            ("Training", ["train", "TrainConfig", "TrainResult", "evaluate", "main"]),
            ("Runs on disk", ["is_complete", "read_metrics", "data_fingerprint"]),
            ("Constants and errors", ["METRICS_NAME", "RESULT_NAME", "ResumeMismatchError"]),
        ],
    ),
    (
        "vae_zoo.zoo",
        "vae_zoo.zoo: a grid of runs",
        "Many training runs over worker processes (``python -m vae_zoo.zoo``).",
        [
            ("Running a zoo", ["run_zoo", "zoo_grid", "ZooRun", "ZooResult", "main"]),
            ("Data and errors", ["DatasetLoader", "ZooError"]),
        ],
    ),
    (
        "vae_zoo.transfer",
        "vae_zoo.transfer: transfer recipes",
        "Re-initialise, freeze and retrain parts of a trained VAE on a new dataset.",
        [
            ("Transferring", ["transfer", "TransferResult"]),
            ("Recipes", ["RECIPES", "Recipe", "get_recipe", "apply_recipe", "TRANSFER_NAME"]),
        ],
    ),
    (
        "vae_zoo.checkpoint",
        "vae_zoo.checkpoint: checkpoints",
        "Atomic, checked checkpoints and JSON files.",
        [
            (
                "Checkpoints",
                [
                    "save_checkpoint",
                    "read_checkpoint",
                    "resolve_checkpoint",
                    "load_model",
                    "load_model_state",
                    "CHECKPOINT_NAME",
                ],
            ),
            ("Files", ["write_json_atomic", "require_keys", "RESUME_PAYLOAD_KEYS"]),
            ("Re-exported", ["atomic_write"], "vae_zoo.storage"),
            (
                "Errors",
                ["CheckpointError", "CheckpointNotFoundError", "ArchitectureMismatchError"],
            ),
        ],
    ),
    (
        "vae_zoo.storage",
        "vae_zoo.storage: files that survive faults",
        "Atomic writes, checksums, an output manifest and directory locks.",
        [
            ("Writing files", ["atomic_path", "atomic_write", "write_json", "sha256_file"]),
            ("Manifests and locks", ["Manifest", "lock_directory", "LOCK_NAME", "MANIFEST_NAME"]),
            ("Errors", ["DirectoryLockedError", "describe_os_error"]),
        ],
    ),
    (
        "vae_zoo.study",
        "vae_zoo.study: the reproduction",
        "The study of Bonheme & Grześ (2023) (``python -m vae_zoo.study``). See the "
        ":doc:`study guide </study>` and the :doc:`report </study/report>`.",
        [("Running the study", ["run_study", "StudyConfig", "quick_config"])],
    ),
]


# Modules whose docstrings explain an implementation (derivations, rules) that other docstrings
# refer to with :mod:. Their pages show the module docstring only; the objects are documented
# under their public names above.
NOTES = [
    "cka_sim.kernels",
    "cka_sim.accumulators.streaming",
    "cka_sim.accumulators.minibatch",
    "cka_sim.accumulators.distributed",
    "vae_zoo.datasets.splits",
    "vae_zoo.study.criteria",
]


def public_names(module: str) -> list[str]:
    """The names a module exports in ``__all__``, without dunders such as ``__version__``."""
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:  # no __all__: the public functions and classes defined in the module
        names = [
            n
            for n, obj in vars(mod).items()
            if not n.startswith("_") and getattr(obj, "__module__", None) == module
        ]
    return [n for n in names if not n.startswith("__")]


def _documented(predicate: Any) -> list[str]:
    found = []
    for module, *_ in PAGES:
        mod = importlib.import_module(module)
        for name in public_names(module):
            if predicate(getattr(mod, name)):
                found.append(f"{module}.{name}")
    return found


def constants() -> list[str]:
    """Fully qualified names of the public objects that are neither classes nor callables."""
    return _documented(lambda obj: not (inspect.isclass(obj) or callable(obj)))


def exceptions() -> list[str]:
    """Fully qualified names of the public exception and warning classes."""
    return _documented(lambda obj: inspect.isclass(obj) and issubclass(obj, BaseException))


def _autosummary(module: str, names: list[str]) -> list[str]:
    lines = [".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
    return lines + [f"   {name}" for name in names] + [""]


def page_text(module: str, title: str, intro: str, sections: list) -> str:
    """The reStructuredText of one module's page."""
    exported = public_names(module)
    mod = importlib.import_module(module)
    placed: set[str] = set()
    lines = [title, "=" * len(title), "", f".. module:: {module}", "", intro, ""]
    for heading, names, *home in sections:
        if home:
            present = [n for n in names if n in exported]
            placed.update(present)
            lead = f"Also importable from ``{module}``; documented in :mod:`{home[0]}`:"
            links = [f"- :obj:`~{home[0]}.{n}`" for n in present]
            lines += [heading, "-" * len(heading), "", lead, "", *links, ""]
            continue
        # A section may list a public helper outside __all__ that the docstrings refer to; a name
        # that does not exist (yet), e.g. a function still being written, is left out.
        present = [n for n in names if n in exported or hasattr(mod, n)]
        if not present:
            continue
        placed.update(present)
        lines += [heading, "-" * len(heading), "", *_autosummary(module, present)]
    rest = [n for n in exported if n not in placed]
    if rest:
        lines += ["Other public names", "-" * 18, "", *_autosummary(module, rest)]
    return "\n".join(lines)


def write_api_pages(directory: Path) -> None:
    """Write ``index.rst`` and one page per module into ``directory`` (only where changed).

    autosummary's stub pages (``generated/``) are removed, so none is left from a name that is
    no longer public.
    """
    shutil.rmtree(directory / "generated", ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    pages = {"index": _index_text(), "notes": _notes_text()}
    for module, title, intro, sections in PAGES:
        pages[module] = page_text(module, title, intro, sections)
    for stem, text in pages.items():
        path = directory / f"{stem}.rst"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def _index_text() -> str:
    lines = [
        "API reference",
        "=============",
        "",
        "Every public name of ``cka_sim`` and ``vae_zoo``, from the docstrings.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    return "\n".join(lines + [f"   {module}" for module, *_ in PAGES] + ["   notes"]) + "\n"


def _notes_text() -> str:
    lines = [
        "Implementation notes",
        "====================",
        "",
        "The module docstrings that explain how the estimators and the study work. The functions",
        "and classes of these modules are documented under their public names.",
        "",
    ]
    for module in NOTES:
        lines += [module, "-" * len(module), "", f".. automodule:: {module}", ""]
    return "\n".join(lines)
