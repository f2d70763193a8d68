"""Without an optional dependency, commands print what is missing and the pip command (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def run_without(
    tmp_path: Path, blocked: tuple[str, ...], *args: str
) -> subprocess.CompletedProcess:
    """Run ``python *args`` where importing any of ``blocked`` fails as if it were not installed."""
    shadow = tmp_path / "shadow"
    for name in blocked:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), *sys.path])}
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("module", "blocked"),
    [
        ("vae_zoo.study", "torch"),
        ("vae_zoo.train", "torch"),
        ("vae_zoo.zoo", "tqdm"),
        ("vae_zoo.zoo", "torch"),
    ],
)
def test_commands_name_the_missing_module_and_the_fix(tmp_path, module, blocked):
    done = run_without(tmp_path, (blocked,), "-m", module, "--help")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {module} needs {blocked}, which is not installed; install the zoo extra: "
        'pip install "cka-sim[zoo]"\n'
    )


def test_importing_the_study_without_torch_raises_with_the_fix(tmp_path):
    done = run_without(tmp_path, ("torch",), "-c", "import vae_zoo.study")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ModuleNotFoundError: vae_zoo.study needs torch, which is not installed; install the zoo "
        'extra: pip install "cka-sim[zoo]"'
    )


def test_plot_without_matplotlib_is_one_line(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", l1=rng.standard_normal((20, 3)))
    done = run_without(
        tmp_path, ("matplotlib",), "-m", "cka_sim", "a.npz", "b.npz", "--plot", "m.png"
    )
    assert done.returncode == 2
    assert done.stderr == (
        'cka-sim: error: cka_sim.plot needs matplotlib; install the plot extra: pip install "cka-sim[plot]"\n'
    )
    assert not (tmp_path / "m.png").exists()


def test_cka_sim_torch_features_without_torch_name_the_fix(tmp_path):
    code = (
        "import cka_sim, numpy as np\n"
        "acc = cka_sim.StreamingCKA()\n"
        "acc.update(np.eye(6), np.eye(6))\n"
        "try:\n"
        "    acc.all_reduce()\n"
        "except ModuleNotFoundError as err:\n"
        "    print(err)\n"
        "import cka_sim.torch\n"
    )
    done = run_without(tmp_path, ("torch",), "-c", code)
    assert done.stdout == (
        'all_reduce needs torch; install the torch extra: pip install "cka-sim[torch]"\n'
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: cka_sim.torch needs torch; install the torch extra: "
        'pip install "cka-sim[torch]"'
    )
