"""Two corrections to what autodoc shows.

- The ``Alias for field number i`` properties of named tuples are skipped: the fields are listed
  under the class's Attributes.
- A dataclass field's ``default_factory`` is shown as a call (``dict()``), not as ``<factory>``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any


def _skip_member(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> Any:
    """Skip the ``Alias for field number i`` properties of named tuples (listed under Attributes)."""
    doc = getattr(obj, "__doc__", None) or ""
    if doc.startswith("Alias for field number"):
        return True
    return None


def _dataclass_defaults(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str | None
) -> Any:
    """Show a dataclass field's ``default_factory`` as a call, not as ``<factory>``.

    ``<factory>`` is not Python, so Sphinx would fall back to splitting the signature at commas,
    breaking annotations such as ``dict[str, Any]``.
    """
    if what != "class" or not signature or "<factory>" not in signature:
        return None
    for field in dataclasses.fields(obj):
        if field.default_factory is not dataclasses.MISSING:
            factory = field.default_factory
            factory_name = getattr(factory, "__name__", "factory")
            call = repr(factory()) if factory_name == "<lambda>" else f"{factory_name}()"
            signature = re.sub(
                rf"({field.name}: [^=]*= )<factory>", lambda m, c=call: m.group(1) + c, signature
            )
    return signature, ret


def setup(app: Any) -> dict[str, Any]:
    """Register the handlers; the signature one runs before sphinx-autodoc-typehints' (500)."""
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-signature", _dataclass_defaults, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
