"""The docstring policy of the API reference, enforced while Sphinx builds it.

numpydoc validates every documented function and class against ``numpydoc_validation_checks``,
except the objects listed in ``docstring_exemptions.EXEMPTIONS``. This extension checks those
listed objects with the same numpydoc checks minus their listed exemptions; methods, properties
and exception classes with the same checks minus ``KIND_EXCLUSIONS``; and every function and
class for what numpydoc does not check:

- ``XR01``: a function or class without a Raises section (what a caller must handle, and why);
- ``XR02``: a function or class without a References section (the paper of the formula, or the
  design the code follows);
- ``XR03``: a parameter with a default whose type line does not state it ("default ..." or
  "optional").

Every failure is a Sphinx warning, so ``sphinx-build -W`` fails. Exemptions that no longer fail
are listed at the end of the build (as information, not as a warning) so the list can shrink.
"""

from __future__ import annotations

import inspect
from typing import Any

from docstring_exemptions import EXEMPTIONS, KIND_EXCLUSIONS
from numpydoc.docscrape import NumpyDocString, get_doc_object
from numpydoc.validate import ERROR_MSGS, get_validation_checks, validate
from sphinx.util import logging

logger = logging.getLogger(__name__)

EXTRA_MSGS = {
    "XR01": "No Raises section found",
    "XR02": "No References section found",
    "XR03": 'Parameter "{param}" has a default ({default}) its type line does not state',
}

_used: set[tuple[str, str]] = set()


def _is_exception(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def extra_errors(what: str, obj: Any, doc: NumpyDocString) -> list[tuple[str, str]]:
    """The XR checks of one object: [(code, message)]."""
    if what not in {"function", "method", "class"} or _is_exception(obj):
        return []
    errors = []
    if what != "method":  # a method's errors and sources are on its class's page
        if not doc["Raises"]:
            errors.append(("XR01", EXTRA_MSGS["XR01"]))
        if not doc["References"]:
            errors.append(("XR02", EXTRA_MSGS["XR02"]))
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return errors
    types: dict[str, str] = {}
    for param in doc["Parameters"]:
        for name in param.name.split(","):
            types[name.strip().lstrip("*")] = param.type
    for name, param in signature.parameters.items():
        if param.default is inspect.Parameter.empty or name not in types:
            continue  # an undocumented parameter is numpydoc's PR01
        stated = types[name].lower()
        if "default" not in stated and "optional" not in stated:
            message = EXTRA_MSGS["XR03"].format(param=name, default=repr(param.default))
            errors.append(("XR03", message))
    return errors


def _check(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in {"module", "data"} or (what == "attribute" and not inspect.isroutine(obj)):
        return  # constants and fields are documented by a comment numpydoc cannot see
    exempt = EXEMPTIONS.get(name, {})
    doc = NumpyDocString(inspect.getdoc(obj) or "")
    errors = extra_errors(what, obj, doc)
    kind = "exception" if _is_exception(obj) else what
    if name in EXEMPTIONS or kind in KIND_EXCLUSIONS:  # excluded from numpydoc's own run
        checks = app.config.numpydoc_validation_checks
        skip = set(KIND_EXCLUSIONS.get(kind, {}))
        # Validate the object itself: its name may also be a module's (cka_sim.hsic, cka_sim.cka).
        report = validate(get_doc_object(obj))
        errors += [e for e in report["errors"] if e[0] in checks and e[0] not in skip]
    failing = []
    for code, message in errors:
        if code in exempt:
            _used.add((name, code))
        else:
            failing.append(f"  {code}: {message}")
    if failing:
        logger.warning(
            "[docstring policy] %s:\n%s", name, "\n".join(failing), type="docstring_policy"
        )


def _report_stale(app: Any, exception: Exception | None) -> None:
    if exception is not None:
        return
    stale = [
        f"{name}: {code}"
        for name, codes in sorted(EXEMPTIONS.items())
        for code in sorted(codes)
        if (name, code) not in _used
    ]
    if stale:
        logger.info(
            "[docstring policy] %d exemptions no longer needed (remove them from "
            "docs/docstring_exemptions.py):\n  %s",
            len(stale),
            "\n  ".join(stale),
        )


def setup(app: Any) -> dict[str, Any]:
    """Register the checks (after numpydoc, which rewrites the docstring lines)."""
    unknown = (
        {c for codes in EXEMPTIONS.values() for c in codes} - set(ERROR_MSGS) - set(EXTRA_MSGS)
    )
    if unknown:
        raise ValueError(f"docstring_exemptions.py uses unknown check codes {sorted(unknown)}")
    get_validation_checks({"all"})  # fail early if numpydoc's API changed
    app.connect("autodoc-process-docstring", _check, priority=400)
    app.connect("build-finished", _report_stale)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
