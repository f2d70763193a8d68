"""The sdist carries everything its own test suite needs (CI unpacks it and runs the tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

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


def _cff_version() -> str:
    """The ``version:`` line of CITATION.cff (a plain YAML scalar, read without a YAML library)."""
    lines = (REPO / "CITATION.cff").read_text(encoding="utf-8").splitlines()
    found = [
        line.split(":", 1)[1].strip().strip("'\"") for line in lines if line.startswith("version:")
    ]
    assert len(found) == 1, f"CITATION.cff has {len(found)} top-level version lines"
    return found[0]


def test_the_version_is_set_in_one_place_and_everything_agrees():
    from cka_sim import __version__
    from cka_sim._version import __version__ as source

    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "pyproject.toml sets its own version"
    assert "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "cka_sim._version.__version__"
    conf = (REPO / "docs" / "conf.py").read_text(encoding="utf-8")
    assert "release = cka_sim.__version__" in conf
    assert __version__ == source == _cff_version()
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{__version__}]" in changelog
    citing = (REPO / "docs" / "citing.md").read_text(encoding="utf-8")
    quoted = set(
        re.findall(r"version (\d+\.\d+\.\d+)|version = \{([^}]*)\}|cka_sim-([\d.]+)-py3", citing)
    )
    assert {v for group in quoted for v in group if v} == {__version__}


def test_the_citation_file_is_valid_and_cites_every_measure():
    cffconvert = shutil.which("cffconvert")
    if cffconvert is None:
        pytest.skip('cffconvert is not installed (it is in the dev extra: pip install -e ".[dev]")')
    check = subprocess.run(
        [cffconvert, "--validate", "-i", str(REPO / "CITATION.cff")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "valid according to schema version 1.2.0" in check.stdout
    text = (REPO / "CITATION.cff").read_text(encoding="utf-8")
    for family, year in [
        ("Kornblith", 2019),
        ("Song", 2012),
        ("Nguyen", 2021),
        ("Cui", 2022),
        ("Ding", 2021),
        ("Williams", 2021),
        ("Bonheme", 2023),
    ]:
        entry = re.search(rf"family-names: {family}\n(?:.*\n)*?    year: (\d+)", text)
        assert entry is not None and int(entry.group(1)) == year, family
        assert f"{family}" in (REPO / "docs" / "citing.md").read_text(encoding="utf-8")


def test_a_broken_citation_file_is_refused(tmp_path):
    cffconvert = shutil.which("cffconvert")
    if cffconvert is None:
        pytest.skip('cffconvert is not installed (it is in the dev extra: pip install -e ".[dev]")')
    broken = (REPO / "CITATION.cff").read_text(encoding="utf-8").replace("cff-version: 1.2.0\n", "")
    broken = broken.replace("type: software\n", "type: sofware\n")
    (tmp_path / "CITATION.cff").write_text(broken, encoding="utf-8")
    check = subprocess.run(
        [cffconvert, "--validate", "-i", str(tmp_path / "CITATION.cff")],
        capture_output=True,
        text=True,
    )
    assert check.returncode != 0
