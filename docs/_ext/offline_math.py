"""A site that works without a network: MathJax from a pinned package, and no remote resources.

``sphinx.ext.mathjax`` loads MathJax from a CDN by default, so on a machine without a network the
API pages show raw TeX. This extension serves MathJax 3 from the files of the pinned
``sphinx-mathjax-offline`` package (the docs extra of ``pyproject.toml``): its ``static``
folder is added to ``html_static_path``, so the build copies ``mathjax/`` into ``_static``, and
``mathjax_path`` points at the copy. When the build has finished, every HTML page is read and the
build fails if one still loads a script, a stylesheet, a font, an image or a frame from another
host (``http://``, ``https://`` or ``//``); links a reader follows (``<a href>``) are allowed.
"""

from __future__ import annotations

import importlib.metadata
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError

#: The distribution that ships MathJax, and the file of it that the pages load.
DISTRIBUTION = "sphinx-mathjax-offline"
MATHJAX_FILE = "mathjax/tex-chtml.js"

#: The attribute of each tag through which a page loads a resource.
_LOADING = {"script": "src", "img": "src", "iframe": "src", "source": "src", "link": "href"}
#: ``<link rel=...>`` values that a browser fetches (a canonical or alternate link is not).
_FETCHED_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "prefetch"}


def mathjax_static_dir() -> Path:
    """The folder of ``sphinx-mathjax-offline`` that holds ``mathjax/``.

    Returns
    -------
    pathlib.Path
        The ``static`` folder; ``MATHJAX_FILE`` exists under it.

    Raises
    ------
    sphinx.errors.ExtensionError
        If the package is not installed or lacks the MathJax file; the message says how to
        install it.
    """
    advice = 'install the docs extra: python -m pip install -e ".[docs]"'
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ExtensionError(
            f"{DISTRIBUTION} is not installed, so MathJax cannot be served offline; {advice}"
        ) from None
    static = Path(str(dist.locate_file("sphinx-mathjax-offline/static")))
    if not (static / MATHJAX_FILE).is_file():
        raise ExtensionError(f"{DISTRIBUTION} has no {MATHJAX_FILE} under {static}; {advice}")
    return static


class _ResourceParser(HTMLParser):
    """Collect the URLs through which a page loads resources."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        attribute = _LOADING.get(tag)
        if attribute is None or attribute not in values:
            return
        if tag == "link" and not _FETCHED_RELS & set(values.get("rel", "").lower().split()):
            return
        self.urls.append(values[attribute])


def remote_resources(html: str) -> list[str]:
    """The URLs of another host that an HTML page loads (scripts, stylesheets, images, frames).

    Parameters
    ----------
    html : str
        The page.

    Returns
    -------
    list of str
        Each ``http://``, ``https://`` or protocol-relative (``//``) URL that the page fetches
        when it is shown, in page order; links a reader follows are not counted.
    """
    parser = _ResourceParser()
    parser.feed(html)
    parser.close()
    return [url for url in parser.urls if url.strip().lower().startswith(("http:", "https:", "//"))]


def _use_local_mathjax(app: Any, config: Any) -> None:
    config.html_static_path = [*config.html_static_path, str(mathjax_static_dir())]
    config.mathjax_path = MATHJAX_FILE


def _check_no_remote_resources(app: Any, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    found = {}
    for page in sorted(Path(app.outdir).rglob("*.html")):
        urls = remote_resources(page.read_text(encoding="utf-8", errors="replace"))
        if urls:
            found[page.relative_to(app.outdir).as_posix()] = urls
    if found:
        listed = "; ".join(f"{page}: {', '.join(urls)}" for page, urls in list(found.items())[:10])
        raise ExtensionError(
            f"{len(found)} built pages load resources from another host, so the site does not "
            f"work offline ({listed}); serve them from _static instead"
        )


def setup(app: Any) -> dict[str, Any]:
    """Serve MathJax from ``_static`` and check the built pages for remote resources."""
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _check_no_remote_resources)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
