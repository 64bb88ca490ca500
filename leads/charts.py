"""The leads pages' and the dashboard's Plotly figures (see core/charts.py for how they travel)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from core.charts import PRIMARY, figure_dict

HOT = "#e11d48"
WARM = "#d97706"
COLD = "#2563eb"
TEMPERATURE_COLOURS = {"cold": COLD, "warm": WARM, "hot": HOT}


def _hover(template: str, **parts: str) -> str:
    """A translated hover text around Plotly's own placeholders (``%{y:,}`` and the like), which
    must not pass through Python's %-formatting."""
    return template % parts + "<extra></extra>"


def score_line(series: Sequence[tuple], current_score: int) -> dict:
    """The contact's score over time: the ledger summed per day, cumulated, held flat up to today.

    Without the last flat stretch a contact whose points stopped months ago gets an axis that ends
    at the last change, which reads as "recent".
    """
    days = [day.isoformat() for day, _ in series]
    scores = [int(score) for _, score in series]
    marker_sizes = [5] * len(days)
    today = timezone.localdate()
    if series and series[-1][0] < today:
        days.append(today.isoformat())
        scores.append(int(current_score))
        marker_sizes.append(0)  # not a change, just "still this score today"
    figure = go.Figure(
        go.Scatter(
            x=days, y=scores, mode="lines+markers" if len(days) < 40 else "lines", line={"color": PRIMARY, "width": 2, "shape": "hv"},
            fill="tozeroy", fillcolor="rgba(79,70,229,0.08)", marker={"size": marker_sizes},
            hovertemplate=_hover(_("%(day)s<br>score %(score)s"), day="%{x|%d %b %Y}", score="%{y:,}"),
        )
    )
    figure.update_layout(showlegend=False, yaxis={"rangemode": "tozero"}, xaxis={"type": "date"})
    return figure_dict(figure)


_FUNNEL_TEXT = {
    "value": "%{value:,}",
    "value+percent initial": "%{value:,}<br>%{percentInitial:.0%}",
}


def funnel_chart(stages: Sequence[dict], *, links: Sequence[str] | None = None, text: str = "value+percent initial",
                 hover_noun: str = "") -> dict:
    """Contacts per stage (the report's ``entered``, or the current counts), as a Plotly funnel."""
    hover_noun = hover_noun or pgettext("funnel chart hover: 120 entered", "entered")
    figure = go.Figure(
        go.Funnel(
            y=[stage["name"] for stage in stages],
            x=[stage["entered"] for stage in stages],
            # texttemplate rather than textinfo: textinfo prints 5000, not 5,000
            texttemplate=_FUNNEL_TEXT.get(text, "%{value:,}"),
            marker={"color": [PRIMARY] * len(stages)},
            connector={"fillcolor": "#eef2ff", "line": {"color": "#c7d2fe", "width": 1}},
            hovertemplate="%{y}: %{x:,} " + hover_noun + "<extra></extra>",
        )
    )
    figure.update_layout(showlegend=False, yaxis={"automargin": True})
    return figure_dict(figure, links)


def temperature_bars(counts: dict[str, int], *, links: Sequence[str] | None = None) -> dict:
    names = ["cold", "warm", "hot"]
    figure = go.Figure(
        go.Bar(
            x=[str(label) for label in (pgettext("temperature", "Cold"), pgettext("temperature", "Warm"),
                                        pgettext("temperature", "Hot"))],
            y=[counts.get(name, 0) for name in names],
            marker={"color": [TEMPERATURE_COLOURS[name] for name in names]},
            text=[f"{counts.get(name, 0):,}" for name in names],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=_hover(_("%(label)s: %(count)s contacts"), label="%{x}", count="%{y:,}"),
        )
    )
    figure.update_layout(showlegend=False, yaxis={"rangemode": "tozero"})
    return figure_dict(figure, links)


def score_buckets(buckets: Sequence[tuple[str, int, int]], *, warm: int, hot: int, links: Sequence[str] | None = None) -> dict:
    """Contacts per score bucket ``(label, count, low)``; bars coloured by the temperature of ``low``."""
    colours = [HOT if low >= hot else WARM if low >= warm else COLD for _, _, low in buckets]
    figure = go.Figure(
        go.Bar(
            x=[label for label, _, _ in buckets], y=[count for _, count, _ in buckets], marker={"color": colours},
            hovertemplate=_hover(_("score %(range)s: %(count)s contacts"), range="%{x}", count="%{y:,}"),
        )
    )
    figure.update_layout(showlegend=False, bargap=0.1, xaxis={"type": "category", "title": {"text": _("Lead score")}})
    return figure_dict(figure, links)


def horizontal_bars(labels: Sequence[str], values: Sequence[int], *, links: Sequence[str] | None = None, unit: str = "") -> dict:
    unit = unit or _("contacts")
    figure = go.Figure(
        go.Bar(
            x=list(values)[::-1], y=list(labels)[::-1], orientation="h", marker={"color": PRIMARY},
            hovertemplate=_hover("%(label)s: %(count)s %(unit)s", label="%{y}", count="%{x:,}", unit=unit),
        )
    )
    figure.update_layout(showlegend=False, yaxis={"automargin": True, "type": "category"})
    return figure_dict(figure, list(links)[::-1] if links is not None else None)


def events_over_time(days: Sequence[str], series: dict[str, Sequence[int]], *, links: Sequence[str] | None = None) -> dict:
    figure = go.Figure()
    for name, values in series.items():
        figure.add_trace(
            go.Bar(x=list(days), y=list(values), name=name.replace("_", " "), hovertemplate="%{x|%d %b}: %{y:,}<extra>%{fullData.name}</extra>")
        )
    figure.update_layout(barmode="stack", xaxis={"type": "date"}, bargap=0.15)
    return figure_dict(figure, links)


def won_lost_buckets(buckets: Sequence[tuple[int, int, int, int]], *, hot: int, suggested: int | None) -> dict:
    """Share of won and of lost leads per score bucket ``(low, high, won, lost)``, with the current
    and the suggested hot thresholds as vertical lines."""
    won_total = sum(b[2] for b in buckets) or 1
    lost_total = sum(b[3] for b in buckets) or 1
    centres = [(low + high - 1) / 2 for low, high, _, _ in buckets]
    width = (buckets[0][1] - buckets[0][0]) * 0.9 if buckets else 1
    labels = [f"{low}–{high - 1}" if high - low > 1 else str(low) for low, high, _, _ in buckets]
    figure = go.Figure()
    figure.add_trace(go.Bar(x=centres, y=[round(100 * b[2] / won_total, 1) for b in buckets], width=width, name=_("Won"),
                            marker={"color": "#059669"}, opacity=0.7, customdata=labels,
                            hovertemplate=_hover(_("score %(range)s: %(share)s of won"), range="%{customdata}", share="%{y}%")))
    figure.add_trace(go.Bar(x=centres, y=[round(100 * b[3] / lost_total, 1) for b in buckets], width=width, name=_("Lost"),
                            marker={"color": "#94a3b8"}, opacity=0.7, customdata=labels,
                            hovertemplate=_hover(_("score %(range)s: %(share)s of lost"), range="%{customdata}", share="%{y}%")))
    shapes = [{"type": "line", "x0": hot, "x1": hot, "yref": "paper", "y0": 0, "y1": 1, "line": {"color": HOT, "width": 2}}]
    annotations = [{"x": hot, "yref": "paper", "y": 1, "text": _("hot now ≥ %(threshold)s") % {"threshold": hot}, "showarrow": False, "xanchor": "left", "font": {"color": HOT, "size": 11}}]
    if suggested is not None and suggested != hot:
        shapes.append({"type": "line", "x0": suggested, "x1": suggested, "yref": "paper", "y0": 0, "y1": 1, "line": {"color": PRIMARY, "dash": "dash", "width": 2}})
        annotations.append({"x": suggested, "yref": "paper", "y": 0.92, "text": _("suggested ≥ %(threshold)s") % {"threshold": suggested}, "showarrow": False, "xanchor": "left", "font": {"color": PRIMARY, "size": 11}})
    figure.update_layout(barmode="overlay", shapes=shapes, annotations=annotations,
                         xaxis={"title": {"text": _("Lead score")}}, yaxis={"title": {"text": _("%% of leads") % {}}})
    return figure_dict(figure)
