"""Charts: Plotly figures built in Python with ``plotly.graph_objects`` (which checks every property
name) and shipped as plain JSON to ``templates/includes/chart.html``; ``static/js/charts.js`` draws
them with the house style. ``layout.meta.links`` holds one URL per point, so a click opens the list
behind the number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

PRIMARY = "#4f46e5"
PRIMARY_LIGHT = "#a5b4fc"
MUTED = "#cbd5e1"
UP = "#10b981"
DOWN = "#e11d48"


def figure_dict(figure: go.Figure, links: Sequence[str] | Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """The figure as the JSON-ready dict ``includes/chart.html`` takes: plain lists, no Plotly
    template (charts.js supplies the house style), the clickable ``links`` in ``layout.meta``."""
    parsed = json.loads(figure.to_json())
    layout = parsed.get("layout", {})
    layout.pop("template", None)
    if links is not None:
        layout.setdefault("meta", {})["links"] = list(links)
    return {"data": parsed["data"], "layout": layout, "config": {"displayModeBar": False, "responsive": True}}
