"""Exemptions from the docstring policy of the API reference, each with its reason.

``GLOBAL_EXCLUSIONS``: numpydoc checks not enforced on any object. ``KIND_EXCLUSIONS``: checks not
applied to a kind of object. ``EXEMPTIONS``: per object, the checks it is excused from and why.
Codes: numpydoc's (``numpydoc.validate.ERROR_MSGS``) and the policy's own ``XR01`` (Raises),
``XR02`` (References) and ``XR03`` (defaults stated), see ``_ext/docstring_policy.py``. The build
lists exemptions that are no longer needed; remove them.
"""

from __future__ import annotations

GLOBAL_EXCLUSIONS = {
    # An extended summary is not required: short functions are fully described by the summary
    # line, the formula and the Parameters; the long ones have one anyway.
    "ES01",
    # See Also is not required: the API pages group related names, and the docstrings
    # cross-reference their siblings in the prose where it helps.
    "SA01",
}

# Checks not applied to a kind of object. Everything else applies to them.
KIND_EXCLUSIONS: dict[str, dict[str, str]] = {
    "method": {
        "EX01": "a method is documented on its class's page, whose Examples section shows the "
        "class in use; an example per method (reset, state_dict, ...) would repeat it",
    },
    "property": {
        "EX01": "the class's Examples section shows its properties in use",
        "RT01": "a property is documented as an attribute (numpydoc convention): the summary "
        "says what it is, without a Returns section",
    },
    "exception": {
        "EX01": "an exception's docstring says when it is raised; the raising function's "
        "Raises section and example show it in use",
    },
}


def _because(reason: str):
    def codes(listed: str) -> dict[str, str]:
        return dict.fromkeys(listed.split(), reason)

    return codes


_CONTAINER = _because(
    "a plain result container: building one raises nothing, and its reference is the function "
    "that returns it"
)

_RETURNED = _because(
    "built only by the function that returns it, whose example shows it; a standalone example "
    "would need a whole training run"
)
_HYPERPARAMETERS = _because(
    "a dataclass of hyper-parameters: building one checks nothing and raises nothing (values "
    "are the caller's choice, as in disentanglement_lib); make_objective checks names"
)

_OWN_FORMAT = _because(
    "reads or checks the files vae_zoo itself writes: there is no publication to cite"
)
_ENTRY_POINT = _because(
    "a command-line entry point: every error is printed as one line and returned as exit "
    "status 2, nothing is raised; --help documents the options"
)

EXEMPTIONS: dict[str, dict[str, str]] = {
    "vae_zoo.train.TrainResult": _CONTAINER("XR01 XR02"),
    "vae_zoo.train.data_fingerprint": _because("raises nothing: it reads arrays in memory")("XR01"),
    "vae_zoo.train.is_complete": _because(
        "a status check: a missing or unreadable run answers False instead of raising"
    )("XR01")
    | _OWN_FORMAT("XR02"),
    "vae_zoo.train.main": _ENTRY_POINT("XR01 XR02"),
    "vae_zoo.train.read_metrics": _OWN_FORMAT("XR02"),
    "vae_zoo.train.snapshot_path": _because(
        "path arithmetic: it raises nothing (a missing file is load_model's error) and follows "
        "no publication"
    )("XR01 XR02"),
    "vae_zoo.checkpoint.resolve_checkpoint": _because(
        "path arithmetic: it raises nothing (a missing file is read_checkpoint's error) and "
        "follows no publication"
    )("XR01 XR02"),
    "cka_sim.torch.first_tensor": _because(
        "returns None when there is no tensor instead of raising; its callers raise, naming the "
        "layer"
    )("XR01"),
    "vae_zoo.datasets.Availability": _CONTAINER("XR01 XR02"),
    "vae_zoo.datasets.available": _because(
        "a status report: a dataset that cannot load is described in the result, with the fix, "
        "instead of raising"
    )("XR01"),
    "vae_zoo.datasets.names": _because(
        "returns a constant tuple: it raises nothing, and the datasets are cited on load()"
    )("XR01 XR02"),
    "vae_zoo.models.Reparameterize": _because(
        "nn.Module's constructor takes *args and **kwargs that this module does not use; its "
        "call signature is in the summary"
    )("PR01"),
    "vae_zoo.models.VAEOutput": _CONTAINER("XR01 XR02"),
    "vae_zoo.objectives.AnnealedVAE": _HYPERPARAMETERS("XR01"),
    "vae_zoo.objectives.BetaTCVAE": _HYPERPARAMETERS("XR01"),
    "vae_zoo.objectives.BetaVAE": _HYPERPARAMETERS("XR01"),
    "vae_zoo.objectives.DIPVAEII": _HYPERPARAMETERS("XR01"),
    "cka_sim.stats.BootstrapResult": _CONTAINER("XR01 XR02"),
    "cka_sim.stats.ConfidenceInterval": _CONTAINER("XR01 XR02"),
    "cka_sim.stats.PermutationTestResult": _CONTAINER("XR01 XR02"),
    "vae_zoo.transfer.TransferResult": _RETURNED("EX01") | _CONTAINER("XR01 XR02"),
    "vae_zoo.zoo.ZooResult": _RETURNED("EX01") | _CONTAINER("XR01 XR02"),
    "vae_zoo.zoo.main": _ENTRY_POINT("XR01 XR02"),
    "vae_zoo.zoo.ZooRun": _because(
        "a record of one cell of the grid: building one checks nothing; run_zoo and TrainConfig "
        "refuse unknown datasets and objectives"
    )("XR01"),
    "vae_zoo.zoo.zoo_grid": _because(
        "lists combinations without checking them; run_zoo and TrainConfig refuse unknown "
        "datasets and objectives"
    )("XR01"),
}
