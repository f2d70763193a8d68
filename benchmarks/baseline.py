"""An older ``cka_sim`` imported beside the current one, for before/after ratios from one run.

``--baseline REV`` extracts the ``cka_sim`` package of git revision ``REV`` (or takes a folder
that holds a ``cka_sim`` package) and imports it under another module name, so the cases can time
the two versions side by side, interleaved round by round, on the same data. ``cka_sim`` imports
its own modules relatively, so the copy never reaches into the current package.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def _extract(rev: str) -> Path:
    """The ``cka_sim`` folder of git revision ``rev``, extracted into a temporary folder."""
    target = Path(tempfile.mkdtemp(prefix="cka-sim-baseline-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "cka_sim"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise SystemExit(
            f"--baseline {rev}: cannot extract cka_sim from git revision {rev!r} "
            f"({detail.decode(errors='replace').strip() or error}); pass a revision of this "
            "repository or a folder that holds a cka_sim package"
        ) from error
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "cka_sim"


def load(spec: str) -> tuple[str, ModuleType]:
    """``(label, module)`` of the baseline ``spec``: a git revision or a folder.

    A folder may be the package itself or hold it as ``cka_sim/``. The label names the contender
    in the table: ``cka_sim@REV`` (short revision) or ``cka_sim@<folder name>``.
    """
    path = Path(spec)
    if path.is_dir():
        package = path / "cka_sim" if (path / "cka_sim" / "__init__.py").exists() else path
        if not (package / "__init__.py").exists():
            raise SystemExit(f"--baseline {spec}: no cka_sim package (no __init__.py) there")
        label = f"cka_sim@{path.resolve().name}"
    else:
        package = _extract(spec)
        short = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", spec],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        label = f"cka_sim@{short}"
    name = "cka_sim_baseline"
    module_spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"--baseline {spec}: cannot import {package}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return label, module


def torch_module(package: ModuleType) -> ModuleType:
    """The ``torch`` adapters (``compare_models``) of ``package``: ``cka_sim`` or the baseline."""
    return importlib.import_module(f"{package.__name__}.torch")
