"""The documentation site works offline: MathJax is served from the site, and the build's check
finds every resource a page would load from another host (docs/_ext/offline_math.py)."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

if importlib.util.find_spec("sphinx") is None:
    pytest.skip(
        'Sphinx is not installed (the docs extra: pip install -e ".[docs]")',
        allow_module_level=True,
    )
sys.path.insert(0, str(DOCS / "_ext"))
offline_math = pytest.importorskip("offline_math")


PAGE = """<!DOCTYPE html><html><head>
<link rel="stylesheet" href="_static/styles/theme.css">
<link rel="canonical" href="https://example.org/cka-sim/index.html">
<link rel="preload" as="font" href="//fonts.example.org/a.woff2">
<link rel="stylesheet" href="HTTPS://cdn.example.org/b.css">
<script src="_static/mathjax/tex-chtml.js" defer></script>
<script src="https://cdn.example.org/mathjax/tex-chtml.js"></script>
<script>var url = "https://not.loaded.example.org/inline.js";</script>
</head><body>
<a href="https://example.org/paper.pdf">a link a reader follows</a>
<img src="_images/heatmap.png"><img src="http://img.example.org/badge.svg">
<iframe src="https://frame.example.org/"></iframe>
</body></html>"""


def test_every_remote_resource_of_a_page_is_found_and_links_are_not():
    assert offline_math.remote_resources(PAGE) == [
        "//fonts.example.org/a.woff2",
        "HTTPS://cdn.example.org/b.css",
        "https://cdn.example.org/mathjax/tex-chtml.js",
        "http://img.example.org/badge.svg",
        "https://frame.example.org/",
    ]
    local = re.sub(r"<[^>]*(//|https?:)[^>]*example\.org[^>]*>", "", PAGE.split("<a ")[0])
    assert offline_math.remote_resources(local) == []


def test_mathjax_is_served_from_the_site_with_its_fonts():
    try:
        static = offline_math.mathjax_static_dir()
    except offline_math.ExtensionError as err:
        pytest.skip(str(err))
    script = static / offline_math.MATHJAX_FILE
    assert script.stat().st_size > 500_000  # the whole TeX-to-CommonHTML component
    assert 'VERSION="3.2.2"' in script.read_text(encoding="utf-8", errors="replace")  # MathJax 3
    fonts = sorted((static / "mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))
    assert any(font.name == "MathJax_Main-Regular.woff" for font in fonts)
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert '"offline_math"' in conf and "mathjax_path" not in conf  # set by the extension only


def test_the_configuration_points_at_the_copy():
    config = types.SimpleNamespace(
        html_static_path=["figures"], mathjax_path="https://cdn.example.org/mathjax.js"
    )
    try:
        offline_math._use_local_mathjax(None, config)
    except offline_math.ExtensionError as err:
        pytest.skip(str(err))
    assert config.mathjax_path == offline_math.MATHJAX_FILE
    assert config.html_static_path[0] == "figures"
    assert (Path(config.html_static_path[-1]) / config.mathjax_path).is_file()
