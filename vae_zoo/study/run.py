"""Run the whole study: stages, claims, figures, ``results.json`` and ``report.md``."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..storage import lock_directory
from .analysis import (
    cka_claims,
    init_control,
    model_masks,
)
from .claim3 import pair_g_profile, transfer_claims
from .claim4 import check_point, visual_claim
from .config import ENCODER_CLAIM_LAYERS, StudyConfig
from .criteria import RULES_VERSION, Claim
from .figures import (
    freeze_depth_curves,
    g_curves,
    graded_test,
    group_heatmaps,
    layer_curves,
    reconstructions,
    sample_grid,
    transfer_curves,
    visual_check,
    visual_validation,
)
from .lengths import length_evals, training_length, variant_key
from .measurement import with_matched_floor
from .pipeline import Study
from .report import final_verdict_lines, start_lines, write_report
from .stages.common import write_json, write_npz

VARIANTS = (
    ("debiased", "mean", "plain"),
    ("biased", "mean", "plain"),
    ("debiased", "sample", "plain"),
    ("biased", "sample", "plain"),
    ("debiased", "sample", "matched"),
    ("biased", "sample", "matched"),
)
"""(estimator, decoder input, floor) readings of claims 1 and 2; the first is primary, the
fourth is the paper's own setting. Floor ``plain``: an untrained model on its own input;
``matched`` (sample-driven decoder only): the untrained decoder driven by the trained model's own
latent sample (:func:`~vae_zoo.study.measurement.with_matched_floor`), since an untrained
encoder's sample is pure noise and the plain floor of the sample-driven decoder is about 0."""


STAGES = ("zoo", "cka", "transfer", "probes", "analysis")


def run_study(config: StudyConfig, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the study in ``out_dir`` and return the content of ``results.json``.

    The study holds an exclusive lock on ``out_dir`` while it runs (see
    :func:`vae_zoo.storage.lock_directory`): a second study on the same directory raises
    :class:`~vae_zoo.storage.DirectoryLockedError` at once, naming the process that holds it.

    Parameters
    ----------
    config : StudyConfig
        The settings; a resumed study must use the same result-changing settings.
    out_dir : str or pathlib.Path
        The study directory: the zoo, transfers, measurements, ``results.json``, ``report.md``
        and ``figures/``.
    progress : bool, default True
        Print the stages and show progress bars.

    Returns
    -------
    dict
        The content of ``results.json``: the settings, the measurements, the verdict on each
        claim, provenance and timings.

    Raises
    ------
    DirectoryLockedError
        When another process holds ``out_dir``.
    ValueError
        When ``out_dir`` holds a study with other result-changing settings, or a dataset does
        not load on this machine.
    OSError
        When a file cannot be written (a full disk, a read-only directory).

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767.

    Examples
    --------
    >>> from vae_zoo.study import quick_config, run_study
    >>> results = run_study(quick_config(), "runs/study-quick")  # doctest: +SKIP
    >>> [claim["id"] for claim in results["claims"]]  # doctest: +SKIP
    ['encoders-generic', 'decoders-specific', 'retrain-which', 'paper-recipe', 'visual-transfer-check']
    """
    with lock_directory(out_dir):
        return _run_locked(config, out_dir, progress=progress)


def _run_locked(config: StudyConfig, out_dir: str | Path, *, progress: bool) -> dict[str, Any]:
    study = Study(config, out_dir, progress=progress)
    for line in start_lines(config.to_dict()):  # toy-size verdicts test the pipeline
        study.log(line)
    with _InvocationTimings(study.out / "timings.json", provenance()) as timer:
        with timer("zoo"):
            checkpoints = study.train_zoo()
            models = study.models(checkpoints)
        with timer("cka"):
            study.measure_cka(checkpoints)
        with timer("transfer"):
            study.run_transfers(checkpoints)
        with timer("probes"):
            probes = study.run_probes(models)
        study.log("[5/5] verdicts, figures and report")
        with timer("analysis"):
            results = analyse(study, models, probes)
        results["provenance"] = {**provenance(), "finished": _utc_now()}
        results["timings"] = timer.finish()
    write_json(study.out / "results.json", results)
    write_report(study.out / "report.md", results)
    elapsed = results["timings"]["wall_seconds_this_invocation"]
    study.log(f"done in {elapsed:.0f} s: {study.out / 'report.md'}")
    for line in final_verdict_lines(results):  # beside the committed full run's, if not one
        study.log(line)
    return results


def _utc_now() -> str:
    """The time in UTC, ISO 8601 to the second (``results.json``'s ``provenance.finished``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _InvocationTimings:
    """This invocation's entry in ``timings.json``, kept on disk while the study runs.

    The entry is written when the invocation starts, again when each stage ends, and every
    :attr:`HEARTBEAT_SECONDS` from a background thread (``running``: the stage in progress and
    its seconds so far). An invocation that is killed therefore keeps its finished stages and
    its wall time up to its last record (``finished: false``), and a resumed study's total
    counts it, short by at most one heartbeat.
    """

    HEARTBEAT_SECONDS = 30.0

    def __init__(self, path: Path, code: dict[str, Any]) -> None:
        self.path = path
        self.history = json.loads(path.read_text()) if path.exists() else []
        self.entry: dict[str, Any] = {
            "started": _utc_now(),
            "finished": False,
            "stages": {},
            "wall_seconds": 0.0,
            "git_commit": code.get("git_commit", "unknown"),
            "uncommitted_changes": bool(code.get("uncommitted_changes")),
        }
        self._start = time.perf_counter()
        self._stage: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _InvocationTimings:
        self._save()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_SECONDS):
            try:
                self._save()
            except OSError:
                return  # a full disk: the stage itself reports it

    def _save(self) -> None:
        with self._lock:
            now = time.perf_counter()
            self.entry["wall_seconds"] = round(now - self._start, 1)
            if self._stage is None:
                self.entry.pop("running", None)
            else:
                name, since = self._stage
                self.entry["running"] = {name: round(now - since, 1)}
            write_json(self.path, [*self.history, self.entry])

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        self._stage = (stage, start)
        try:
            yield
        finally:
            self._stage = None
            self.entry["stages"][stage] = round(time.perf_counter() - start, 1)
            self._save()

    def finish(self) -> dict[str, Any]:
        """Mark the invocation finished; return ``results.json``'s ``timings``: every
        invocation's entry (a resumed study says which commit computed which stage, and which
        invocations were cut short) and the sums over them."""
        self.entry["finished"] = True
        self._save()
        history = [*self.history, self.entry]
        return {
            "per_invocation": history,
            "stage_seconds_this_invocation": dict(self.entry["stages"]),
            "wall_seconds_this_invocation": self.entry["wall_seconds"],
            "invocations": len(history),
            "interrupted_invocations": sum(1 for h in history if h.get("finished") is False),
            "total_wall_seconds": round(sum(h["wall_seconds"] for h in history), 1),
            "stage_seconds_total": {
                stage: round(sum(_stage_seconds(h, stage) for h in history), 1) for stage in STAGES
            },
        }


def _stage_seconds(entry: dict[str, Any], stage: str) -> float:
    """A stage's seconds in one invocation: finished, or cut short while it ran."""
    return entry["stages"].get(stage, entry.get("running", {}).get(stage, 0.0))


def provenance() -> dict[str, Any]:
    """The code and packages that produced the results: git commit (or "unknown"), versions."""
    import platform
    from importlib import metadata

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", ""
    versions = {"python": platform.python_version()}
    for package in ("cka-sim", "numpy", "scipy", "torch", "scikit-learn", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "git_commit": commit or "unknown",
        "uncommitted_changes": bool(dirty),
        "packages": versions,
        "platform": platform.platform(),
        "rules_version": RULES_VERSION,
    }


def analyse(
    study: Study, models: dict[str, Any], probes: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """Claims, secondary readings, tables and figures from the stored measurements."""
    config = study.config
    figures = study.out / "figures"
    evals = [_load_eval(study, name) for name in config.datasets]
    primary, variants, tables = _cka_readings(study, evals, figures)
    claim3, paper, tables["transfer_gains"] = _sweep_reading(study, evals, figures)
    claim4 = _visual_reading(study, evals, models, probes, figures)
    _samples(study, models, figures / "samples.png")
    return {
        "config": config.to_dict(),
        "rules_version": RULES_VERSION,
        "claims": [claim.to_dict() for claim in (*primary, claim3, paper, claim4)],
        "secondary": variants,
        "tables": tables,
        "models": study.model_records(),
        "evaluation_sets": study.evaluation_sets(),
        "probe_sets": study.probe_sets(),
        "probe_accuracy": probes,
        "training_length": training_length(study, length_evals(study)),
        "figures": sorted(str(p.relative_to(study.out)) for p in figures.glob("*.png")),
    }


def _load_eval(study: Study, name: str) -> dict[str, Any]:
    """The stage-2 arrays of one evaluation set, its ``meta`` naming the dataset."""
    data = study.load_cka(name)
    data["meta"]["dataset"] = name
    return data


def _cka_readings(
    study: Study, evals: list[dict[str, Any]], figures: Path
) -> tuple[list[Claim], dict[str, dict[str, Any]], dict[str, Any]]:
    """Claims 1 and 2 under every reading of :data:`VARIANTS`, with their curves, heatmaps and
    replicates: the primary claims, the secondary readings and the CKA tables."""
    config = study.config
    variants: dict[str, dict[str, Any]] = {}
    primary: list[Claim] = []
    tables: dict[str, Any] = {}
    replicates: dict[str, np.ndarray] = {}
    curves = []
    for measure, mode, floor in VARIANTS:
        is_primary = (measure, mode, floor) == VARIANTS[0]
        data = evals if floor == "plain" else [with_matched_floor(e, measure) for e in evals]
        claim1, claim2, extra = cka_claims(
            data, config, measure=measure, mode=mode, second=evals if is_primary else None
        )
        variants[variant_key(measure, mode, floor)] = _variant(claim1, claim2)
        suffix = "_matched_floor" if floor == "matched" else ""
        replicates.update({f"{k}{suffix}": v for k, v in extra["replicates"].items()})
        if is_primary:
            primary += [claim1, claim2]
            tables["layers"] = extra["layers"]
            tables["depth_matched"] = extra["depth"]
            tables["init_control"] = init_control(evals, extra["stats"], config)
            variants["deconfounded/mean"] = _variant(*extra["deconfounded_claims"])
            curves.append(("debiased CKA (decoder driven by the mean)", extra["stats"], "mean"))
            curves.append(("deconfounded CKA", extra["deconfounded_stats"], "mean"))
        elif floor == "plain" or measure == "debiased":
            driven = "the mean" if mode == "mean" else "a sample"
            matched = ", matched-input floor" if floor == "matched" else ""
            title = f"{measure} CKA (decoder driven by {driven}{matched})"
            curves.append((title, extra["stats"], mode))
    layer_curves(curves, config.confidence_level, figures / "cka_layer_curves.png")
    g_curves(curves[:2], config.confidence_level, figures / "cka_G_curves.png")
    _heatmaps(evals, figures)
    _save_replicates(study.out / "analysis" / "replicates.npz", replicates)
    return primary, variants, tables


def _variant(claim1: Claim, claim2: Claim) -> dict[str, Any]:
    """One reading of claims 1 and 2 in ``results.json``'s ``secondary``."""
    return {"encoders-generic": claim1.to_dict(), "decoders-specific": claim2.to_dict()}


def _sweep_reading(
    study: Study, evals: list[dict[str, Any]], figures: Path
) -> tuple[Claim, Claim, dict[str, Any]]:
    """Claim 3 from the graded test, the paper's recipe against scratch, and the long curves'
    gains over scratch (a secondary reading), with their figures."""
    config = study.config
    graded = study.graded_losses()
    profiles = {
        (source, target): pair_g_profile(
            evals[config.datasets.index(target)], f"{source}/s{config.transfer_source_seed}", target
        )
        for source, target in graded
    }
    runs, scratch = study.long_losses()
    claim3, paper, gains = transfer_claims(
        graded,
        study.check_losses()["scratch"],
        study.tie_losses(),
        profiles,
        config,
        long=(runs, scratch),
    )
    graded_test(claim3.evidence, figures / "graded_test.png")
    freeze_depth_curves(claim3.evidence, figures / "freeze_depth.png")
    transfer_curves(runs, scratch, config, figures / "transfer_curves.png")
    return claim3, paper, gains


def _visual_reading(
    study: Study,
    evals: list[dict[str, Any]],
    models: dict[str, Any],
    probes: dict[str, dict[str, float]],
    figures: Path,
) -> Claim:
    """Claim 4 from the real transfers (every source seed of ``check_source_seeds``), with a
    visual check per target and its validation."""
    config = study.config
    checks = study.check_losses()
    points, panels = _visual_points(study, evals, models, probes, checks)
    scratch = {
        t: [probes[t][f"check/scratch/{i}"] for i in range(config.scratch_seeds)]
        for t in config.datasets
    }
    claim4 = visual_claim(points, config, scratch)
    for target, (rows, originals, units) in panels.items():
        visual_check(target, rows, originals, units, figures / f"visual_check_{target}.png")
    visual_validation(points, claim4.evidence, figures / "visual_check_validation.png")
    return claim4


def _save_replicates(path: Path, replicates: dict[str, np.ndarray]) -> None:
    write_npz(path, **{key.replace("/", "_"): value for key, value in replicates.items()})


#: The heatmap panels, left to right: (group of :func:`~vae_zoo.study.analysis.model_masks`,
#: title). The floor panel needs untrained models among the heatmap models.
HEATMAP_PANELS = (
    ("same", "same dataset, other seed (ceiling)"),
    ("cross", "different datasets"),
    ("random", "trained (rows) vs untrained (columns): the floor"),
)


def heatmap_groups(
    evals: list[dict[str, Any]],
) -> tuple[dict[str, tuple[np.ndarray, int]], list[str]]:
    """Mean layer x layer debiased CKA per comparison group over every evaluation set, each
    cell over the pairs where it is defined: ``({group: (matrix, pairs)}, layer names)``.
    A group with no pair among the heatmap models (the floor, where no untrained model is
    kept) is left out."""
    sums: dict[str, np.ndarray] = {}
    finite: dict[str, np.ndarray] = {}
    pairs: dict[str, int] = {}
    names: list[str] = []
    for data in evals:
        meta = data["meta"]
        if not meta.get("heatmap_models"):
            continue
        names = [layer for layer, _ in meta["heatmap_units"]]
        masks = model_masks(meta["heatmap_models"])
        for group, _ in HEATMAP_PANELS:
            for a, b in zip(*np.nonzero(masks[group]), strict=True):
                block = np.asarray(data["heatmap"][a, :, b, :], dtype=float)
                sums[group] = sums.get(group, 0) + np.nan_to_num(block)
                finite[group] = finite.get(group, 0) + np.isfinite(block)
                pairs[group] = pairs.get(group, 0) + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {g: (np.where(finite[g] > 0, sums[g] / finite[g], np.nan), pairs[g]) for g in sums}
    return means, names


def _heatmaps(evals: list[dict[str, Any]], figures: Path) -> None:
    """Mean layer x layer debiased CKA (decoder from the mean): the ceiling, cross-dataset
    pairs and the floor (trained against untrained), side by side on one colour scale."""
    means, names = heatmap_groups(evals)
    matrices = {
        f"{title} ({means[group][1]} pairs)": (means[group][0], names)
        for group, title in HEATMAP_PANELS
        if group in means
    }
    if not matrices:
        return
    note = "" if "random" in means else "; no untrained model among the heatmap models, no floor"
    group_heatmaps(
        matrices,
        figures / "cka_heatmaps.png",
        "Mean debiased CKA between all layers of two VAEs (rows: model A, columns: model B)" + note,
    )


def _visual_points(
    study: Study,
    evals: list[dict[str, Any]],
    models: dict[str, Any],
    probes: dict[str, dict[str, float]],
    checks: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Claim-4 points: per (source, target), the visual scores and gains of real transfer from
    each source seed and their means (:func:`vae_zoo.study.claim4.check_point`); and the
    panels of the visual check (seed-mean profiles, reconstructions by the first seed's model)."""
    config = study.config
    points: list[dict[str, Any]] = []
    panels: dict[str, Any] = {}
    seeds = config.check_source_seeds
    for target, data in zip(config.datasets, evals, strict=True):
        ids, units = data["meta"]["models"], data["meta"]["units"]
        diag, labels = data["debiased_full"], data["debiased_labels"]
        enc = [units.index((layer, "mean")) for layer in ENCODER_CLAIM_LAYERS]
        targets = [ids.index(f"{target}/s{s}") for s in config.seeds]
        scratch_acc = [probes[target][f"check/scratch/{i}"] for i in range(config.scratch_seeds)]
        images, _ = study.eval_images(target)
        shown = _one_per_class(study, target, 8)
        same = np.nanmean([diag[a, b] for a in targets for b in targets if a < b], axis=0)
        rows = []
        for source in (d for d in config.datasets if d != target):
            rows_s = [ids.index(f"{source}/s{seed}") for seed in seeds]
            profiles = [np.nanmean(diag[s, targets], axis=0) for s in rows_s]
            per_seed = [
                {
                    "seed": seed,
                    "score": float(np.nanmean(profile[enc])),
                    "label_score": float(np.nanmean(labels[s, enc])),
                    "accuracy": float(probes[target][f"check/all/{source}/s{seed}"]),
                    "loss": float(checks["all"][(source, target, seed)]),
                }
                for seed, s, profile in zip(seeds, rows_s, profiles, strict=True)
            ]
            point = check_point(source, target, per_seed, scratch_acc, checks["scratch"][target])
            points.append(point)
            first = models[f"{source}/s{seeds[0]}"]
            rows.append(
                {
                    **point,
                    "profile": np.mean(profiles, axis=0),
                    "seed_profiles": profiles,
                    "same_profile": same,
                    "label_profile": np.nanmean(labels[rows_s], axis=0),
                    "target_label_profile": np.nanmean(labels[targets], axis=0),
                    "reconstructions": reconstructions(first, images[shown]),
                    "reconstruction_seed": seeds[0],
                }
            )
        panels[target] = (rows, images[shown].astype(np.float32) / 255, units)
    return points, panels


def _one_per_class(study: Study, name: str, count: int) -> np.ndarray:
    """Positions in the evaluation set of ``count`` images, cycling through the classes."""
    _, labels = study.eval_images(name)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [idx[i] for i in range(max(map(len, by_class))) for idx in by_class if i < len(idx)]
    return np.array(order[:count])


def _samples(study: Study, models: dict[str, Any], path: Path) -> None:
    seed = study.config.transfer_source_seed
    rows = []
    for name in study.config.datasets:
        images, _ = study.eval_images(name)
        images = images[_one_per_class(study, name, 10)]
        rows.append(
            (
                f"{name} (seed {seed}): test images and reconstructions",
                images.astype(np.float32) / 255,
                reconstructions(models[f"{name}/s{seed}"], images),
            )
        )
    sample_grid(rows, path)
