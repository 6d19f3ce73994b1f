"""The options tables of the docs, generated from each app's ``CONFIG`` and ``DEMO``.

A docs page holds a table between the markers ``<!-- options NAME -->`` and
``<!-- /options -->``. ``python -m parties.optiondocs`` rewrites every such block from the
configs (run it after adding or changing an option); ``tests/test_docs.py`` fails while a block
is out of date or an app's options are documented nowhere.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from .apps import available_apps, load_app

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"(<!-- options (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S)


def render(name: str) -> str:
    """The Markdown of app ``name``'s options: the protocol's table, then the demo-data one if any."""
    app = load_app(name)
    parts = [app.CONFIG.options_table()]
    if app.DEMO.option_names():
        parts.append("Demo-data options (`mpcml demo` only):\n\n" + app.DEMO.options_table())
    return "\n\n".join(parts) + "\n"


def documented() -> dict[str, list[tuple[Path, str]]]:
    """``{app name: [(page, current block text), ...]}`` for every block in docs/."""
    found: dict[str, list[tuple[Path, str]]] = {}
    for page in sorted(DOCS.glob("*.md")):
        for match in _BLOCK.finditer(page.read_text(encoding="utf-8")):
            found.setdefault(match["name"], []).append((page, match["body"]))
    return found


def rewrite() -> list[Path]:
    """Regenerate every block in docs/; returns the pages that changed."""
    changed = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = _BLOCK.sub(lambda m: m.group(1) + render(m["name"]) + m.group(4), text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def configured_apps() -> list[str]:
    """The apps whose options come from a ``CONFIG``."""
    return [name for name in available_apps() if hasattr(load_app(name), "CONFIG")]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in rewrite():
        logging.getLogger(__name__).info("updated %s", path)
    sys.exit(0)
