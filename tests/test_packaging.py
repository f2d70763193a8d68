"""The sdist carries everything its own test suite needs (CI unpacks it and runs the tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_sdist_ships_the_tests_benchmarks_and_docs(tmp_path):
    # a clean copy: setuptools also ships whatever an earlier build's *.egg-info/SOURCES.txt lists
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "*.egg-info", "__pycache__", "dist", "build", "runs", "*venv", ".*cache"
        ),
    )
    build = (
        "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    )
    name = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        shipped = {Path(*Path(member).parts[1:]).as_posix() for member in sdist.getnames()}
    needed = {
        path.relative_to(REPO).as_posix()
        for pattern in ("tests/*.py", "benchmarks/*.py", "benchmarks/*.sh", "docs/*.md", "*.md")
        for path in REPO.glob(pattern)
    }
    assert "tests/conftest.py" in needed and "benchmarks/__init__.py" in needed
    assert sorted(needed - shipped) == []
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in shipped)
