"""Sphinx configuration of the cka-sim documentation site.

Build it with ``pip install -e ".[docs]" && sphinx-build -W --keep-going docs docs/_build/html``.
The build needs no network: no intersphinx inventories are fetched, and the gallery's examples use
only generated data. Nor does the site: MathJax is copied into ``_static`` from a pinned package,
and the build fails if a page loads a resource from another host (``_ext/offline_math.py``). The pages of the API reference are written from ``api_sections.py`` when the
build starts, so a name added to a module's ``__all__`` appears even before it is placed in a
section. The docstring policy (numpydoc validation plus the checks numpydoc lacks) and its
exemptions, each with its reason, are in ``_ext/docstring_policy.py`` and ``docstring_exemptions.py``.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS / "_ext"))

os.environ.setdefault("MPLBACKEND", "Agg")
# One thread per process: the CI machine has two cores and the gallery's arrays are small.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from api_pages import constants, exceptions, write_api_pages  # noqa: E402
from docstring_exemptions import EXEMPTIONS, GLOBAL_EXCLUSIONS  # noqa: E402

import cka_sim  # noqa: E402

project = "cka-sim"
author = "cka-sim developers"
copyright = "cka-sim developers"
release = cka_sim.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "offline_math",  # MathJax served from _static; fails the build on a remote resource
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_autodoc_typehints",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "docstring_policy",
    "xref_fallback",
    "autodoc_tweaks",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "examples",  # sphinx-gallery reads these and writes auto_examples/
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "**/*.codeobj.json",
    # execution-time tables of older builds: sphinx-gallery's page loads jQuery and DataTables
    # from a CDN, so it is no longer written (write_computation_times below)
    "sg_execution_times.rst",
    "auto_examples/sg_execution_times.rst",
]
templates_path = ["_templates"]

# --- Cross-references: every reference to a cka_sim or vae_zoo name must resolve ---------------
# There is no intersphinx (the build stays offline), so names of Python, NumPy, torch and
# matplotlib cannot resolve; they are rendered as code without a link. The rest is checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|nn|matplotlib|scipy|array_api_compat|os|pathlib|typing)(\..*)?"),
    (r"py:.*", r"(collections\.abc|concurrent\.futures|dataclasses|enum|datetime|json)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|Literal|Path|PathLike)"),
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|None|type|slice)"),
    (r"py:.*", r"(ValueError|TypeError|KeyError|RuntimeError|RuntimeWarning|FileNotFoundError)"),
    (
        r"py:.*",
        r"(OSError|ImportError|Exception|Warning|UserWarning|IndexError|NotImplementedError)",
    ),
    # numpydoc type words ("array_like", "optional", "default", "shape (n, p)") are prose.
    (r"py:.*", r"(array_like|array-like|optional|default|shape|of|or|callable|mapping|sequence)"),
    (r"py:.*", r"(path-like|file-like|dtype|tensor|generator|iterable|scalar|positive|Tensor)"),
]
# Docstrings that explain an implementation may name private helpers (a module or name with a
# leading underscore). The site documents the public API only, so those render as code, unlinked.
nitpick_ignore_regex.append((r"py:.*", r"(cka_sim|vae_zoo)(\.\w+)*\._\w+(\.\w+)*"))

# --- autodoc, autosummary, typehints -----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "signature"  # types in the signature; numpydoc's Parameters hold the prose
autodoc_preserve_defaults = True  # show "auto", not a repr of a sentinel
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # an undocumented override (nn.Module.forward) is not shown
typehints_use_signature = True
typehints_use_signature_return = True
typehints_document_rtype = False  # the Returns section already states it
always_document_param_types = False
typehints_fully_qualified = False
add_module_names = False
python_use_unqualified_type_names = True
toc_object_entries_show_parents = "hide"

# --- numpydoc ----------------------------------------------------------------------------------
numpydoc_show_class_members = False  # members are listed by the autosummary class template
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# The checks every public docstring passes (numpydoc's codes; see docstring_exemptions.py for the
# few not enforced anywhere, each with its reason). Objects with a per-object exemption are taken
# out of numpydoc's own run and checked by docstring_policy with the exempted codes removed.
numpydoc_validation_checks = {"all", *GLOBAL_EXCLUSIONS}
# Taken out of numpydoc's own run: constants (documented by a ``#:`` comment numpydoc cannot
# see; it would validate the docstring of their type, e.g. ``str``), and the objects that
# docstring_policy checks instead, with their exemptions: listed objects, exception classes, and
# methods and properties (``module.Class.member``).
numpydoc_validation_exclude = {
    *("^" + re.escape(name) + "$" for name in [*EXEMPTIONS, *constants(), *exceptions()]),
    r"\.[A-Z]\w*\.\w+$",
}

# --- MyST (the Markdown guides) ----------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
suppress_warnings = ["myst.header"]  # the guides start at "#"; some skip a level for emphasis

# --- sphinx-gallery ----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("cka_sim",),
    "reference_url": {"cka_sim": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    # Its sg_execution_times pages load scripts from a CDN; the site works offline without them
    # (offline_math fails the build on a remote resource). CI prints the build's time instead.
    "write_computation_times": False,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
}

# --- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"cka-sim {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "header_links_before_dropdown": 6,
}
html_static_path: list[str] = []
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

write_api_pages(DOCS / "api")
