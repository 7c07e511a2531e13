"""The HTML of the status page: one shell (``static/page.html``) around the view's data, and the static files.

The shell carries the data the page opens with as JSON inside a ``<script type="application/json">`` block, and
the page's script (``static/app.js``) renders it with DOM text nodes, never as markup. So the first paint needs
no second request, and no scan path, reason or file name is ever read as HTML. What goes into the shell is
escaped here: text with ``html.escape``, the JSON so that it cannot close its script block.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files
from string import Template
from typing import Literal

from pydantic import BaseModel

PageName = Literal["scans", "scan", "deadletters", "missing"]

#: The static files the page loads, with their content types.
STATIC: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@cache
def static_file(name: str) -> bytes:
    """One of ``STATIC``'s files, read once from the package."""
    if name not in STATIC:
        raise KeyError(name)
    return (files("beamflow.statuspage") / "static" / name).read_bytes()


@cache
def _shell() -> Template:
    return Template((files("beamflow.statuspage") / "static" / "page.html").read_text(encoding="utf-8"))


def script_json(data: str) -> str:
    """JSON made safe inside a script block: no ``</script>``, no ``<!--``, no line separators JavaScript chokes on."""
    return (
        data.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render(page: PageName, title: str, data: BaseModel | None) -> bytes:
    """The page ``page`` titled ``title``, opening with ``data``."""
    return (
        _shell()
        .substitute(
            title=html.escape(title),
            page=html.escape(page),
            initial=script_json(data.model_dump_json() if data is not None else "null"),
        )
        .encode()
    )
