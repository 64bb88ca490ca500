"""How ``static/vendor/analytics-next-<version>*`` is made from the npm registry's packages, so the
browser snippet needs no CDN: the shop's page loads everything from this host.

    npm pack @segment/analytics-next@1.84.3 @babel/polyfill@7.7.0   # in an empty folder, then untar
    python -m tracking.vendoring <analytics-next package dir> <babel-polyfill package dir>

analytics.js loads three things from Segment's CDN unless told otherwise: its settings and lazy
bundles from ``analytics._cdn`` (our snippet sets it to this host: ``/v1/projects/<key>/settings``
and ``/analytics-next/bundles/<file>``), legacy destinations (we enable none), and, on browsers
without Promise, a polyfill from cdnjs. The build's fallback URLs are rewritten to this host's
paths, so even an unreachable branch names no CDN; the lazy bundles and the polyfill are vendored
beside the library. Source-map comments are dropped (the maps are not vendored).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

VERSION = "1.84.3"
POLYFILL_VERSION = "7.7.0"
STATIC_VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"
LIBRARY = f"analytics-next-{VERSION}.js"
BUNDLES_DIR = f"analytics-next-{VERSION}"
POLYFILL = f"babel-polyfill-{POLYFILL_VERSION}.min.js"
# Lazy bundles our settings can ask for; the legacy video plugins (and their vendor chunk, which
# calls Vimeo's and Google's APIs) stay off (``legacyVideoPluginsEnabled: false``) and are not vendored.
BUNDLES = ("ajs-destination", "auto-track", "queryString", "remoteMiddleware", "schemaFilter", "tsub-middleware")
POLYFILL_PATH = "/analytics-next/polyfill.min.js"

REWRITES = [
    # the polyfill for old browsers: from this host (the snippet set analytics._cdn before loading us)
    ('"https://cdnjs.cloudflare.com/ajax/libs/babel-polyfill/7.7.0/polyfill.min.js"',
     f'(window.analytics&&window.analytics._cdn||"")+"{POLYFILL_PATH}"'),
    ('"https://cdn.segment.com/analytics-next/bundles/"', '"/analytics-next/bundles/"'),
    ('"https://cdn.segment.com/analytics.js/v1/"', '"/analytics.js/v1/"'),
    ('"https://cdn.segment.com"', '""'),
    # remote plugins (loaded from Segment's CDN and re-pointed by this pattern) are off in our
    # settings (``remotePlugins: []``): the pattern matches nothing
    ('new RegExp("https://cdn.segment.(com|build)")', 'new RegExp("(?!)")'),
    # a CSP violation of the library's own bundles switches it to its fallback: ours are here
    ('blockedURI.includes("cdn.segment")', 'blockedURI.includes("/analytics-next/")'),
]
CDN_HOSTS = re.compile(r"(https?://(cdnjs\.|[\w.-]*cdn[\w-]*\.|unpkg\.com)|cdn\.segment)")
SOURCE_MAP = re.compile(r"\n?//# sourceMappingURL=\S+\s*$")


def rewrite(text: str) -> str:
    for old, new in REWRITES:
        text = text.replace(old, new)
    text = SOURCE_MAP.sub("\n", text)
    leftover = CDN_HOSTS.search(text)
    if leftover:
        raise ValueError(f"a CDN address is left in the build: {leftover.group(0)} — add a rewrite")
    return text


def vendor(package: Path, polyfill_package: Path) -> list[Path]:
    umd = package / "dist" / "umd"
    written = [STATIC_VENDOR / LIBRARY]
    written[0].write_text(rewrite((umd / "standalone.js").read_text()))
    bundles = STATIC_VENDOR / BUNDLES_DIR / "bundles"
    shutil.rmtree(bundles, ignore_errors=True)
    bundles.mkdir(parents=True)
    for path in sorted(umd.glob("*.bundle.*.js")):
        if path.name.split(".bundle.")[0] in BUNDLES:
            target = bundles / path.name
            target.write_text(rewrite(path.read_text()))
            written.append(target)
    polyfill = STATIC_VENDOR / POLYFILL
    polyfill.write_text(rewrite((polyfill_package / "dist" / "polyfill.min.js").read_text()))
    written.append(polyfill)
    return written


if __name__ == "__main__":
    for written_path in vendor(Path(sys.argv[1]), Path(sys.argv[2])):
        print(written_path)
