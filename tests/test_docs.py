"""The docs' options tables are the configs' own (one edit adds an option everywhere)."""

from __future__ import annotations

from parties.optiondocs import configured_apps, documented, render


def test_every_configured_app_has_a_current_options_table_in_the_docs():
    blocks = documented()
    for name in configured_apps():
        assert name in blocks, f"docs/ has no '<!-- options {name} -->' block; add one and run python -m parties.optiondocs"
        for page, body in blocks[name]:
            assert body == render(name), f"{page.name}: the {name} options table is out of date; run python -m parties.optiondocs"
