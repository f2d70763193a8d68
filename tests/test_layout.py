"""The shape of the code (docs/layout.md): small modules and functions, one-way imports, and a
short path from ``linear_cka`` to its arithmetic. Each test measures the tree as it is, so a
change that grows a module past its limit, adds an import circle or lengthens the pipeline fails
here, not in review."""

from __future__ import annotations

import ast
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import cka_sim
import vae_zoo

PACKAGES = {"cka_sim": Path(cka_sim.__file__).parent, "vae_zoo": Path(vae_zoo.__file__).parent}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_TOP_MODULES = 12


def _modules(package: str) -> list[Path]:
    return sorted(PACKAGES[package].rglob("*.py"))


def _functions(path: Path) -> list[tuple[str, int]]:
    """``(name, lines)`` of every function and method, from ``def`` to its last line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_is_over_the_line_limit(package):
    long = {
        str(p.relative_to(PACKAGES[package])): n
        for p in _modules(package)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_function_is_over_the_line_limit(package):
    long = [
        f"{p.relative_to(PACKAGES[package])}:{name} ({n} lines)"
        for p in _modules(package)
        for name, n in _functions(p)
        if n > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines, docstring included: {long}"


def test_the_top_of_cka_sim_holds_at_most_a_dozen_modules():
    top = sorted(p.name for p in PACKAGES["cka_sim"].glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def _import_graph(package: str) -> dict[str, set[str]]:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(package)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circle(package):
    # a package's __init__ imports its own modules to re-export them; leave those arrows out
    graph = {
        m: {t for t in targets if not (m.count(".") < t.count(".") and t.startswith(m + "."))}
        for m, targets in _import_graph(package).items()
    }
    assert _cycles(graph) == []


def test_the_layering_contracts_hold():
    cli = pytest.importorskip("importlinter.cli")
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():
        pytest.skip("needs the project's pyproject.toml (its [tool.importlinter] contracts)")
    cwd = os.getcwd()
    try:
        os.chdir(root)
        assert cli.lint_imports(config_filename=str(root / "pyproject.toml")) == 0
    finally:
        os.chdir(cwd)


def _profile(call) -> tuple[int, int, int]:
    """(calls, distinct functions, changes of file) of the Python calls into cka_sim."""
    root = str(PACKAGES["cka_sim"])
    calls: list[tuple[str, str]] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(root):
            calls.append((frame.f_code.co_filename, frame.f_code.co_qualname))

    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(None)
    files = [f for f, _ in calls]
    return len(calls), len(set(calls)), sum(a != b for a, b in itertools.pairwise(files))


def test_linear_cka_reaches_its_arithmetic_in_a_short_path():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 64)).astype(np.float32)
    y = rng.standard_normal((2000, 64)).astype(np.float32)
    cka_sim.linear_cka(x, y)  # imports and caches first
    calls, distinct, changes = _profile(lambda: cka_sim.linear_cka(x, y))
    assert calls <= 50 and distinct <= 20 and changes <= 16, (calls, distinct, changes)


def test_streaming_update_shares_the_path():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 64)).astype(np.float32)  # more than a row-buffer block
    y = rng.standard_normal((5000, 64)).astype(np.float32)
    acc = cka_sim.StreamingCKA()
    acc.update(x, y)
    seen: set[str] = set()
    root = str(PACKAGES["cka_sim"])

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(root):
            seen.add(frame.f_code.co_qualname)

    sys.setprofile(hook)
    try:
        acc.update(x, y)
    finally:
        sys.setprofile(None)
    # the batch goes through the one-shot functions' stages: centre, the pass, the move to the mean
    assert {"centre", "Moments.of_batch", "_pass", "_about_mean", "Moments.combined"} <= seen
