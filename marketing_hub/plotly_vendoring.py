"""How ``static/vendor/plotly-finance-<version>.min.js`` is made from the npm registry's package, so
the charts need nothing from outside this host (the app works offline):

    npm pack plotly.js-finance-dist-min@4.1.0   # in an empty folder, then untar
    python -m marketing_hub.plotly_vendoring <package dir>

The finance partial bundle draws every chart type we use (bar, scatter, funnel, pie). Its defaults
name two outside addresses, neither of which our charts reach: the topojson maps of geo traces
(not in this bundle) on Plotly's CDN, and Chart Studio's "edit this chart" server (the link is off).
Both are rewritten to this host, so even an unreachable branch names no CDN; anything else that
looks like a CDN address stops the rewrite.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

VERSION = "4.1.0"
STATIC_VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"
BUNDLE = f"plotly-finance-{VERSION}.min.js"
TOPOJSON_PATH = "/static/vendor/plotly-topojson/"

REWRITES = [
    ('topojsonURL:{valType:"string",noBlank:!0,dflt:"https://cdn.plot.ly/un/"}',
     f'topojsonURL:{{valType:"string",noBlank:!0,dflt:"{TOPOJSON_PATH}"}}'),
    ('plotlyServerURL:{valType:"string",dflt:"https://cloud.plotly.com/newchart"}',
     'plotlyServerURL:{valType:"string",dflt:""}'),
]
CDN_ADDRESS = re.compile(r"https?://[\w.-]*(cdn|unpkg|jsdelivr|cloud\.plotly)[\w.-]*", re.IGNORECASE)


def rewrite(text: str) -> str:
    """The bundle with its outside addresses pointed at this host; ValueError when the build has
    one this does not know (a new version: look at it before vendoring)."""
    for old, new in REWRITES:
        if old not in text:
            raise ValueError(f"the build no longer contains {old[:60]!r}…: check the rewrites for this version")
        text = text.replace(old, new)
    if match := CDN_ADDRESS.search(text):
        raise ValueError(f"the build names a CDN address this does not rewrite: {match.group(0)}")
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    package = Path(argv[0])
    source = package / "plotly-finance.min.js"
    (STATIC_VENDOR / BUNDLE).write_text(rewrite(source.read_text()))
    shutil.copyfile(package / "LICENSE", STATIC_VENDOR / f"plotly-finance-{VERSION}.LICENSE.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
