"""The app works offline: no static file or template names a CDN (the vendored libraries' outside
addresses are rewritten to this host when they are vendored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marketing_hub import plotly_vendoring

ROOT = Path(__file__).resolve().parent.parent
CDN_ADDRESS = re.compile(
    r"https?://[\w.-]*(cdn|unpkg|jsdelivr|googleapis|gstatic|cloudflare|cloud\.plotly)[\w.-]*", re.IGNORECASE)


def _served_files() -> list[Path]:
    static = [path for path in (ROOT / "static").rglob("*") if path.suffix in (".js", ".css", ".html")]
    templates = [path for path in ROOT.rglob("templates/**/*.html") if ".venv" not in path.parts
                 and "staticfiles" not in path.parts]
    return static + templates


def test_no_static_file_or_template_names_a_cdn():
    # given every file the browser is served or that renders a page
    files = _served_files()
    assert any(path.name == plotly_vendoring.BUNDLE for path in files)
    # then none names a CDN
    found = [(path.relative_to(ROOT), match.group(0)) for path in files
             if (match := CDN_ADDRESS.search(path.read_text(errors="replace")))]
    assert found == []


def test_plotly_bundle_points_its_outside_defaults_at_this_host():
    bundle = (plotly_vendoring.STATIC_VENDOR / plotly_vendoring.BUNDLE).read_text()
    assert f'dflt:"{plotly_vendoring.TOPOJSON_PATH}"' in bundle
    assert 'plotlyServerURL:{valType:"string",dflt:""}' in bundle


def test_plotly_rewrite_refuses_a_build_with_an_unknown_cdn_address():
    build = "".join(old for old, _ in plotly_vendoring.REWRITES) + 'load("https://cdn.example.net/x.js")'
    with pytest.raises(ValueError, match="CDN"):
        plotly_vendoring.rewrite(build)
