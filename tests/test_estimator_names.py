"""Which estimator ran is never a surprise: results name it, and the README's defaults table is
the functions' real defaults."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import cka_sim
import cka_sim.stats
from cka_sim import bootstrap_ci, cka_matrix, permutation_test

README = Path(__file__).resolve().parent.parent / "README.md"


def test_statistics_results_name_the_estimator():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = x + rng.standard_normal((40, 3))
    assert permutation_test(x, y, n_permutations=9, seed=0).estimator == "linear"
    debiased = permutation_test(x, y, n_permutations=9, seed=0, debiased=True)
    assert debiased.estimator == "linear-debiased"
    assert bootstrap_ci(x, y, n_resamples=10, seed=0, kernel="rbf").estimator == "rbf"
    custom = bootstrap_ci(x, y, n_resamples=10, seed=0, kernel=lambda a: a @ a.T, debiased=True)
    assert custom.estimator == "custom-kernel-debiased"
    assert cka_matrix({"a": x}, {"b": y}, debiased=True).estimator == "linear-debiased"


def _readme_defaults() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("### Defaults: which estimator runs") :]
    section = section[: section.index("\n## ")]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`(\w+)`", cells[0]):
                for setting in re.findall(r"`(\w+=[^`]+)`", cells[1]):
                    rows.append((name, setting))
    return rows


def test_readme_defaults_table_is_the_real_defaults():
    torch_adapters = pytest.importorskip("cka_sim.torch")
    rows = _readme_defaults()
    assert {name for name, _ in rows} >= {"linear_cka", "MinibatchCKA", "compare_models"}
    for name, setting in rows:
        owner = next(m for m in (cka_sim, cka_sim.stats, torch_adapters) if hasattr(m, name))
        key, value = setting.split("=", 1)
        default = inspect.signature(getattr(owner, name)).parameters[key].default
        assert repr(default) == value.replace('"', "'"), (
            f"README: {name}({setting}), code: {default!r}"
        )
