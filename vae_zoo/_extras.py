"""Optional dependencies: a clear message, with the pip command, when one is missing."""

from __future__ import annotations

import sys
from typing import NoReturn

#: Installs everything vae_zoo uses (torch, tqdm, matplotlib, scikit-learn and the data packages).
ZOO_EXTRA = 'pip install "cka-sim[zoo]"'
#: The third-party modules of the zoo extra that vae_zoo imports.
OPTIONAL = frozenset({"torch", "tqdm", "matplotlib", "sklearn"})


def missing(err: ImportError, user: str, *, command: bool = False) -> NoReturn:
    """Turn the ``ImportError`` of a missing optional module into a message with the fix.

    Parameters
    ----------
    err : ImportError
        The error of the failed import; re-raised as it is unless it names a module of
        :data:`OPTIONAL`.
    user : str
        What needs the module, for the message (``"vae_zoo.train"``).
    command : bool
        True when running as a command (``python -m ...``): print the message alone and exit
        with status 2. A package imported by ``python -m`` to run one of its modules counts as
        a command too (``sys.argv[0]`` is ``"-m"`` while Python locates the module).

    Raises
    ------
    ModuleNotFoundError
        Naming the missing module and the pip command.
    """
    name = (err.name or "").split(".")[0]
    if name not in OPTIONAL:
        raise err
    message = f"{user} needs {name}, which is not installed; install the zoo extra: {ZOO_EXTRA}"
    if command or sys.argv[:1] == ["-m"]:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)
    raise ModuleNotFoundError(message, name=name) from None
