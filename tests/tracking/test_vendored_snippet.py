"""The browser snippet loads nothing from a CDN: the vendored build names none, and the bundles and
polyfill it asks this host for resolve to vendored static files."""

from __future__ import annotations

import re

import pytest

from tracking import vendoring

CDN_ADDRESS = re.compile(r"(https?://[\w.-]*(cdn|unpkg|jsdelivr)[\w.-]*|cdn\.segment)", re.IGNORECASE)


def _vendored_files():
    return [vendoring.STATIC_VENDOR / vendoring.LIBRARY, vendoring.STATIC_VENDOR / vendoring.POLYFILL,
            *sorted((vendoring.STATIC_VENDOR / vendoring.BUNDLES_DIR / "bundles").glob("*.js"))]


def test_no_vendored_file_names_a_cdn():
    # given every file the snippet can load
    files = _vendored_files()
    # then each exists and none names a CDN
    assert len(files) == 2 + len(vendoring.BUNDLES)
    for path in files:
        text = path.read_text()
        assert not CDN_ADDRESS.search(text), f"{path.name}: {CDN_ADDRESS.search(text).group(0)}"
    # and the library looks for its bundles and polyfill on this host
    library = files[0].read_text()
    assert '"/analytics-next/bundles/"' in library and vendoring.POLYFILL_PATH in library


def test_rewrite_refuses_a_build_with_an_unknown_cdn_address():
    with pytest.raises(ValueError, match="CDN"):
        vendoring.rewrite('load("https://cdn.example.net/x.js")')


@pytest.mark.django_db
def test_bundles_and_polyfill_are_served_from_static(client):
    # given the bundle names the build asks for
    bundle = next((vendoring.STATIC_VENDOR / vendoring.BUNDLES_DIR / "bundles").glob("schemaFilter.bundle.*.js")).name
    # when the library requests them from this host
    found = client.get(f"/analytics-next/bundles/{bundle}")
    polyfill = client.get("/analytics-next/polyfill.min.js")
    unknown = client.get("/analytics-next/bundles/evil.bundle.js")
    traversal = client.get("/analytics-next/bundles/../../settings.py")
    # then they lead to the vendored static files, and nothing else is served
    assert found.status_code == 302 and found["Location"].endswith(f"/bundles/{bundle}")
    assert polyfill.status_code == 302 and vendoring.POLYFILL in polyfill["Location"]
    assert unknown.status_code == 404 and traversal.status_code == 404
