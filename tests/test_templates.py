"""Template hygiene: Django's ``{# … #}`` comments end on their line; one spread over lines is not a
comment and shows its text on the page (it did, above the segment builder's conditions)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_template_comment_spans_lines():
    templates = [path for path in ROOT.glob("**/templates/**/*.html") if ".venv" not in path.parts]
    assert len(templates) > 20
    unclosed = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in templates
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.count("{#") > line.count("#}")
    ]
    assert unclosed == [], f"multi-line {{# #}} comments (use {{% comment %}}): {unclosed}"
