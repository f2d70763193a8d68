"""Every Python code block in README.md and docs/*.md runs, so the documentation cannot rot.

The blocks of one file run in order, in one namespace (a later block may use an earlier one's
variables), in a temporary working directory with a temporary dataset cache. Names a block uses
without defining them are stand-ins supplied by the fixtures below (``model_a``, ``loader``,
``acts_a``, ...). Blocks that would train for minutes or build gigabytes of cache are scaled down
by the text substitutions in ``SCALE_DOWN``; every substitution must apply, so the table follows
the docs.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", re.DOTALL | re.MULTILINE)

#: (file, original text, replacement): shrink the work, not the code path.
SCALE_DOWN: list[tuple[str, str, str]] = [
    ("README.md", "standard_normal((1000, 64))", "standard_normal((200, 64))"),
    ("docs/streaming.md", "torch.randn(10_000, 128)", "torch.randn(1_000, 128)"),
    ("README.md", "n_permutations=1000", "n_permutations=20"),
    (
        "README.md",
        "bootstrap_ci(x, y, debiased=True, seed=0)",
        "bootstrap_ci(x, y, debiased=True, seed=0, n_resamples=20)",
    ),
    (
        "docs/datasets.md",
        'load("dsprites", split="train", size=64)',
        'load("dsprites", split="train", size=64, max_examples=300)',
    ),
    ("docs/datasets.md", "max_examples=10_000", "max_examples=300"),
    ("docs/statistics.md", "n_permutations=999", "n_permutations=20"),
    ("docs/statistics.md", "n_resamples=1000", "n_resamples=20"),
    (
        "docs/statistics.md",
        "n_resamples=500, n_permutations=499",
        "n_resamples=20, n_permutations=20",
    ),
    ("docs/vae_zoo.md", 'split="train", size=32)', 'split="train", size=32, max_examples=256)'),
    ("docs/vae_zoo.md", 'split="test", size=32)', 'split="test", size=32, max_examples=64)'),
    (
        "docs/vae_zoo.md",
        "TrainConfig(steps=5000, seed=0)",
        "TrainConfig(steps=3, seed=0, eval_examples=32)",
    ),
    ("docs/vae_zoo.md", '["dsprites", "mnist", "fashion_mnist", "animals"]', '["digits", "mnist"]'),
    (
        "docs/vae_zoo.md",
        "config=TrainConfig(steps=5000)",
        "config=TrainConfig(steps=3, eval_examples=32)",
    ),
    ("docs/vae_zoo.md", "workers=2,", "workers=1,"),  # spawning two workers costs seconds
    ("docs/vae_zoo.md", "seeds=[0, 1],", "seeds=[0],"),
    (
        "docs/vae_zoo.md",
        "DatasetLoader(max_examples=None)",
        "DatasetLoader(max_examples=256, max_test_examples=32)",
    ),
    (
        "docs/vae_zoo.md",
        "TrainConfig(steps=2000, eval_every=0)",
        "TrainConfig(steps=3, eval_every=0, eval_examples=32)",
    ),
    ("docs/vae_zoo.md", "eval_budgets=(0, 250, 500, 1000, 2000)", "eval_budgets=(0, 3)"),
]


def _blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number, code)`` of every Python block of a Markdown file."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


FILES = [path for path in DOCS if _blocks(path)]


# -- stand-ins ------------------------------------------------------------------------------------


def _stand_ins() -> dict[str, Any]:
    """Objects the docs use without building them, by name (made only when a block needs them)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from vae_zoo.datasets import load

    def model_a() -> nn.Module:
        torch.manual_seed(1)
        model = nn.Module()
        model.layer1 = nn.Sequential(nn.Linear(20, 32), nn.ReLU())
        model.layer2 = nn.Linear(32, 8)
        model.forward = lambda x: model.layer2(model.layer1(x))
        return model.eval()

    def model_b() -> nn.Module:
        torch.manual_seed(2)
        model = nn.Module()
        model.block = nn.Sequential(nn.Linear(20, 16), nn.Tanh())
        model.forward = lambda x: model.block(x)
        return model.eval()

    def loader() -> DataLoader:
        data = TensorDataset(torch.randn(256, 20), torch.zeros(256))
        return DataLoader(data, batch_size=64)

    def acts(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        base = rng.standard_normal((200, 16))
        return {
            "layer3": base + rng.standard_normal((200, 16)),
            "layer4": np.tanh(base) + 2 * rng.standard_normal((200, 16)),
        }

    return {
        "model_a": model_a,
        "model_b": model_b,
        "loader": loader,
        "acts_a": lambda: acts(0),
        "acts_b": lambda: acts(1),
        "x": lambda: torch.rand(8, 1, 32, 32),
        "target": lambda: load("digits", split="train", size=32, max_examples=256),
        "target_test": lambda: load("digits", split="test", size=32, max_examples=64),
    }


def _free_names(code: str, namespace: dict[str, Any]) -> set[str]:
    """Names ``code`` reads that neither the namespace, builtins nor the code itself bind."""
    import ast
    import builtins

    tree = ast.parse(code)
    bound = set(namespace) | set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    loads = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return loads - bound


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A temporary working directory and dataset cache, a headless matplotlib, and the
    environment of a one-process ``torch.distributed`` job (for the distributed example)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAE_ZOO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": "0",
        "WORLD_SIZE": "1",
    }.items():
        monkeypatch.setenv(key, value)
    yield tmp_path
    try:
        import matplotlib.pyplot as plt

        plt.close("all")
    except ImportError:
        pass


def test_every_scale_down_applies_to_a_block():
    for name, old, _ in SCALE_DOWN:
        assert any(old in code for _, code in _blocks(REPO / name)), f"{name}: {old!r} not found"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_python_blocks_run(path, sandbox):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    name = path.relative_to(REPO).as_posix()
    stand_ins = _stand_ins()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for line, code in _blocks(path):
        for where, old, new in SCALE_DOWN:
            if where == name:
                code = code.replace(old, new)
        for free in sorted(_free_names(code, namespace)):
            assert free in stand_ins, f"{name} line {line}: no stand-in for {free!r}"
            namespace[free] = stand_ins[free]()
        try:
            exec(compile(code, f"{name}:{line}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"the block at {name} line {line} fails: {err!r}") from err
