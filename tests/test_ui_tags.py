"""The row-level includes (icon, tag chip, temperature badge), now drawn in Python: the markup the
templates always produced, escaping included."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

SVG_OPEN = ('<svg class="icon icon-{cls}" width="{size}" height="{size}" viewBox="0 0 24 24" fill="none" '
            'stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" {a11y} '
            'focusable="false">')
STAR = '<path d="m12 3 2.8 5.7 6.2.9-4.5 4.4 1 6.2L12 17.3l-5.5 2.9 1-6.2L3 9.6l6.2-.9z"/>'
FLAME = ('<path d="M12 21.5c3.9 0 7-2.8 7-6.7 0-3.3-1.9-5.6-3.7-7.6-.3 1.9-1.2 3.1-2.6 3.6.4-3.6-1.1-6.6-3.7-8.3.2 '
         '3.3-1.4 5.2-3 7.1C4.8 11.1 5 13.2 5 14.8c0 3.9 3.1 6.7 7 6.7z"/><path d="M12 21.5c-1.7 0-3-1.2-3-3 0-1.6 '
         '1.1-2.6 3-4.2 1.9 1.6 3 2.6 3 4.2 0 1.8-1.3 3-3 3z"/>')


def svg(cls: str, paths: str, size: int = 20, a11y: str = 'aria-hidden="true"') -> str:
    return SVG_OPEN.format(cls=cls, size=size, a11y=a11y) + paths + "</svg>\n"


def test_icon_draws_the_named_shape_with_its_options():
    # when icons are included with and without options
    plain = render_to_string("includes/icon.html", {"name": "star"})
    sized = render_to_string("includes/icon.html", {"name": "star", "icon_size": 12, "icon_class": "icon-open"})
    labelled = render_to_string("includes/icon.html", {"name": "star", "icon_label": 'Best "tag" <b>'})
    unknown = render_to_string("includes/icon.html", {"name": "no-such-icon"})
    # then each is the shape's svg, sized, classed, labelled (escaped) or a circle when unknown
    assert plain == svg("star", STAR)
    assert sized == svg("star icon-open", STAR, size=12)
    assert labelled == svg("star", STAR, a11y='role="img" aria-label="Best &quot;tag&quot; &lt;b&gt;"')
    assert unknown == svg("no-such-icon", '<circle cx="12" cy="12" r="8"/>')
    # a page variable called size does not leak in (the parameter is icon_size)
    assert render_to_string("includes/icon.html", {"name": "star", "size": 12}) == plain


def test_tag_chip_shows_name_score_strength_colour_and_link():
    # when a strongest, coloured, linked chip and a plain one are drawn
    strong = render_to_string("includes/tag_chip.html", {
        "name": "kurtki", "score": 4, "strongest": True, "colour": "#e11d48", "href": "/contacts/?tag=kurtki&x=1",
        "size": "sm"})
    plain = render_to_string("includes/tag_chip.html", {"name": "buty", "score": 0})
    # then the markup carries each part, the link escaped, and a zero score still shows
    assert strong == (
        '<a href="/contacts/?tag=kurtki&amp;x=1" class="chip chip-strong chip-sm" style="--chip-colour: #e11d48" '
        'title="kurtki · score 4 · strongest">' + svg("star", STAR, size=12)
        + '<span class="chip-name">kurtki</span><span class="score">4</span></a>\n')
    assert plain == ('<span class="chip" title="buty · score 0"><span class="chip-name">buty</span>'
                     '<span class="score">0</span></span>\n')


def test_tag_chip_escapes_names_and_formats_fractional_scores():
    # given a name with markup, a fractional score, no score at all, and a name already marked safe
    hostile = render_to_string("includes/tag_chip.html", {"name": '<img src=x onerror="1">', "score": 2.5,
                                                          "colour": '"><script>'})
    unscored = render_to_string("includes/tag_chip.html", {"name": "sukienki", "score": None})
    safe = render_to_string("includes/tag_chip.html", {"name": mark_safe("<i>vip</i>")})
    # then markup is escaped everywhere, the score shows two decimals, and no score shows none
    assert "<img" not in hostile and "<script>" not in hostile
    assert 'title="&lt;img src=x onerror=&quot;1&quot;&gt; · score 2.50"' in hostile
    assert 'style="--chip-colour: &quot;&gt;&lt;script&gt;"' in hostile
    assert '<span class="score">2.50</span>' in hostile
    assert unscored == '<span class="chip" title="sukienki"><span class="chip-name">sukienki</span></span>\n'
    assert '<span class="chip-name"><i>vip</i></span>' in safe


def test_temperature_badge_per_temperature():
    # when each temperature (and an unknown one) is drawn
    hot = render_to_string("includes/temperature_badge.html", {"temperature": "hot", "title": "Score 87 <hot>"})
    warm = render_to_string("includes/temperature_badge.html", {"temperature": "warm"})
    unknown = render_to_string("includes/temperature_badge.html", {"temperature": ""})
    # then the pill, its icon, its label and the (escaped) title
    assert hot == ('<span class="temp temp-hot" title="Score 87 &lt;hot&gt;">' + svg("flame", FLAME) + "Hot</span>\n")
    assert warm.startswith('<span class="temp temp-warm" title="Warm lead"><svg class="icon icon-sun"')
    assert warm.endswith("</svg>\nWarm</span>\n")
    assert unknown == '<span class="temp" title="No temperature yet">—</span>\n'
