"""Resolve a Python cross-reference to the public name it means, when that is unambiguous.

Docstrings are written next to the code and sometimes name an object by its defining module
(``cka_sim.kernels.gram_polynomial``) or by its short name from another module (``ConvVAE`` in
``vae_zoo.checkpoint``). The site documents each object once, under its public name
(``cka_sim.gram_polynomial``, ``vae_zoo.models.ConvVAE``). This resolves such a reference to the
one documented object with the same name in the same package. A reference to an object that
exists but is not documented (an internal helper named in a module's notes) is shown as code
without a link. Anything else stays unresolved, and ``nitpicky`` reports it.
"""

from __future__ import annotations

import importlib
from typing import Any

from sphinx.util.nodes import make_refnode

_KINDS = {
    "func": {"function", "method"},
    "meth": {"method", "function"},
    "class": {"class", "exception"},
    "exc": {"exception", "class"},
    "obj": None,
    "attr": {"attribute", "property", "data"},
    "data": {"data", "attribute"},
}


def candidates(objects: dict[str, Any], target: str, kinds: set[str] | None) -> list[str]:
    """Documented names that end in ``target``'s last one or two components, in its package."""
    parts = target.split(".")
    package = parts[0] if len(parts) > 1 and parts[0] in {"cka_sim", "vae_zoo"} else None
    found = []
    for tail in (parts[-2:], parts[-1:]) if len(parts) > 1 else (parts,):
        suffix = "." + ".".join(tail)
        found = [
            name
            for name, entry in objects.items()
            if name.endswith(suffix)
            and (package is None or name.split(".")[0] == package)
            and (kinds is None or entry.objtype in kinds)
        ]
        if found:
            break
    return found


def importable(target: str, module: str) -> bool:
    """Whether ``target`` (absolute, or relative to ``module``) names an object of the project."""
    for name in (target, f"{module}.{target}" if module else target):
        if name.split(".")[0] not in {"cka_sim", "vae_zoo"}:
            continue
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return True
    return False


def _resolve(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    found = []
    if node.get("reftype") in _KINDS:
        found = candidates(domain.objects, node["reftarget"], _KINDS[node["reftype"]])
    if not found:
        # An implementation detail that exists but is not part of the documented API (a helper
        # named in a module's notes): shown as code, without a link. A name that does not exist
        # at all stays unresolved and is reported.
        if importable(node["reftarget"], node.get("py:module") or ""):
            return contnode
        return None
    module = node.get("py:module") or ""
    if len(found) > 1 and module:  # prefer the package of the referring docstring
        same = [n for n in found if n.split(".")[0] == module.split(".")[0]]
        found = same or found
    if len(found) != 1:
        return None
    entry = domain.objects[found[0]]
    return make_refnode(
        app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, found[0]
    )


def setup(app: Any) -> dict[str, Any]:
    """Register the resolver (it runs only for references nothing else resolved)."""
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
