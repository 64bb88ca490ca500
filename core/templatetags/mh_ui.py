"""Python renderings of the small includes that pages repeat in table rows: ``includes/icon.html``,
``includes/tag_chip.html`` and ``includes/temperature_badge.html`` call these tags.

They used to be template logic: the icon a 55-branch ``{% if name == … %}`` chain, the chip and
the badge nested includes. A 25-row hot-leads page rendered a few hundred of them, evaluating
thousands of template conditions — about half of its rendering time. The output is the same byte
for byte (tests/test_ui_tags.py); the includes stay the interface every template uses. Add an icon
to ``ICON_PATHS``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django import template
from django.conf import settings
from django.template.context import Context
from django.template.defaultfilters import floatformat
from django.utils.html import conditional_escape, escape, json_script
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.roles import role_label

register = template.Library()

ICON_PATHS = {
    "home": '<path d="M3.5 10.5 12 3.5l8.5 7"/><path d="M5.5 9v10.5a1 1 0 0 0 1 1H10v-6h4v6h3.5a1 1 0 0 0 1-1V9"/>',
    "users": '<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20c.4-3.4 3.1-5.5 6.5-5.5s6.1 2.1 6.5 5.5"/><path d="M15.5 4.7a3.5 3.5 0 0 1 0 6.6"/><path d="M17.5 14.8c2.2.6 3.7 2.5 4 5.2"/>',
    "tag": '<path d="M3 11.6V4a1 1 0 0 1 1-1h7.6a1 1 0 0 1 .7.3l8.4 8.4a1 1 0 0 1 0 1.4l-7.6 7.6a1 1 0 0 1-1.4 0l-8.4-8.4a1 1 0 0 1-.3-.7z"/><circle cx="7.5" cy="7.5" r="1.5"/>',
    "filter": '<path d="M4 6h16"/><path d="M7 12h10"/><path d="M10 18h4"/>',
    "zap": '<path d="M13 2.5 4.5 13.5H12l-1 8 8.5-11H12z"/>',
    "flame": '<path d="M12 21.5c3.9 0 7-2.8 7-6.7 0-3.3-1.9-5.6-3.7-7.6-.3 1.9-1.2 3.1-2.6 3.6.4-3.6-1.1-6.6-3.7-8.3.2 3.3-1.4 5.2-3 7.1C4.8 11.1 5 13.2 5 14.8c0 3.9 3.1 6.7 7 6.7z"/><path d="M12 21.5c-1.7 0-3-1.2-3-3 0-1.6 1.1-2.6 3-4.2 1.9 1.6 3 2.6 3 4.2 0 1.8-1.3 3-3 3z"/>',
    "funnel": '<path d="M3 4h18l-7 8.5v6l-4 2.5v-8.5z"/>',
    "award": '<circle cx="12" cy="9" r="6"/><path d="m8.6 13.9-1.6 7.6 5-2.8 5 2.8-1.6-7.6"/><path d="m10 9 1.5 1.5L14.5 7.5"/>',
    "activity": '<path d="M21.5 12h-4l-3 8.5-5-17-3 8.5h-4"/>',
    "settings": '<circle cx="12" cy="12" r="2.8"/><path d="M10.3 3.2h3.4l.5 2.4 1.9 1.1 2.3-.8 1.7 2.9-1.8 1.7v2.2l1.8 1.7-1.7 2.9-2.3-.8-1.9 1.1-.5 2.4h-3.4l-.5-2.4-1.9-1.1-2.3.8-1.7-2.9 1.8-1.7v-2.2L3.9 8.8l1.7-2.9 2.3.8 1.9-1.1z"/>',
    "plus": '<path d="M12 5v14M5 12h14"/>',
    "x": '<path d="M18 6 6 18M6 6l12 12"/>',
    "check": '<path d="M20 6.5 9.5 17 4 11.5"/>',
    "search": '<circle cx="11" cy="11" r="6.5"/><path d="m20 20-4.2-4.2"/>',
    "menu": '<path d="M4 6h16M4 12h16M4 18h16"/>',
    "log-out": '<path d="M9 20.5H5.5a1 1 0 0 1-1-1v-15a1 1 0 0 1 1-1H9"/><path d="m15.5 16.5 4.5-4.5-4.5-4.5"/><path d="M20 12H9.5"/>',
    "download": '<path d="M12 3.5v11.5"/><path d="m7 10.5 5 5 5-5"/><path d="M4.5 20.5h15"/>',
    "upload": '<path d="M12 15.5V4"/><path d="m7 8.5 5-5 5 5"/><path d="M4.5 20.5h15"/>',
    "edit": '<path d="M13 20.5h7.5"/><path d="M16.4 3.6a2.1 2.1 0 0 1 3 3L7.5 18.5l-4 1 1-4z"/>',
    "trash": '<path d="M3.5 6h17"/><path d="M8.5 6V4.5a1 1 0 0 1 1-1h5a1 1 0 0 1 1 1V6"/><path d="m18.5 6-.8 13.1a1.5 1.5 0 0 1-1.5 1.4H7.8a1.5 1.5 0 0 1-1.5-1.4L5.5 6"/><path d="M10 10.5v6M14 10.5v6"/>',
    "refresh": '<path d="M20.5 12a8.5 8.5 0 1 1-2.6-6.1l2.6 2.6"/><path d="M20.5 3.5v5h-5"/>',
    "copy": '<rect x="8.5" y="8.5" width="12" height="12" rx="2"/><path d="M15.5 8.5V5a1.5 1.5 0 0 0-1.5-1.5H5A1.5 1.5 0 0 0 3.5 5v9A1.5 1.5 0 0 0 5 15.5h3.5"/>',
    "more": '<circle cx="5.5" cy="12" r="1"/><circle cx="12" cy="12" r="1"/><circle cx="18.5" cy="12" r="1"/>',
    "external": '<path d="M14 3.5h6.5V10"/><path d="M20.5 3.5 11 13"/><path d="M18 14v5a1.5 1.5 0 0 1-1.5 1.5h-11A1.5 1.5 0 0 1 4 19V8a1.5 1.5 0 0 1 1.5-1.5H10"/>',
    "chevron-left": '<path d="m15 18-6-6 6-6"/>',
    "chevron-right": '<path d="m9 18 6-6-6-6"/>',
    "chevron-down": '<path d="m6 9 6 6 6-6"/>',
    "chevron-up": '<path d="m18 15-6-6-6 6"/>',
    "arrow-up-right": '<path d="M7 17 17 7"/><path d="M8 7h9v9"/>',
    "trending-up": '<path d="m2.5 17 6.5-6.5 4 4 8.5-8.5"/><path d="M15.5 6h6v6"/>',
    "trending-down": '<path d="m2.5 7 6.5 6.5 4-4 8.5 8.5"/><path d="M15.5 18h6v-6"/>',
    "info": '<circle cx="12" cy="12" r="9"/><path d="M12 16.5v-5"/><path d="M12 8h.01"/>',
    "alert": '<path d="M10.3 4 2.4 17.8a2 2 0 0 0 1.7 3h15.8a2 2 0 0 0 1.7-3L13.7 4a2 2 0 0 0-3.4 0z"/><path d="M12 9.5v4"/><path d="M12 17h.01"/>',
    "check-circle": '<circle cx="12" cy="12" r="9"/><path d="m8 12.2 2.8 2.8L16 9.5"/>',
    "x-circle": '<circle cx="12" cy="12" r="9"/><path d="m15 9-6 6M9 9l6 6"/>',
    "exclamation": '<path d="M12 6.5v7"/><path d="M12 17.5h.01"/>',
    "info-small": '<path d="M12 11v6.5"/><path d="M12 6.5h.01"/>',
    "clock": '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3.2 2"/>',
    "lock": '<rect x="4.5" y="10.5" width="15" height="10" rx="2"/><path d="M8 10.5V7.5a4 4 0 0 1 8 0v3"/>',
    "star": '<path d="m12 3 2.8 5.7 6.2.9-4.5 4.4 1 6.2L12 17.3l-5.5 2.9 1-6.2L3 9.6l6.2-.9z"/>',
    "mail": '<rect x="3" y="5" width="18" height="14" rx="2"/><path d="m3.5 6.5 8.5 6 8.5-6"/>',
    "user": '<circle cx="12" cy="8" r="4"/><path d="M4.5 20.5c.6-3.8 3.7-6 7.5-6s6.9 2.2 7.5 6"/>',
    "snowflake": '<path d="M12 2.5v19"/><path d="m3.8 7.3 16.4 9.4"/><path d="m3.8 16.7 16.4-9.4"/><path d="m9.5 4 2.5 2 2.5-2"/><path d="m9.5 20 2.5-2 2.5 2"/>',
    "sun": '<circle cx="12" cy="12" r="4"/><path d="M12 2.5v2M12 19.5v2M4.6 4.6 6 6M18 18l1.4 1.4M2.5 12h2M19.5 12h2M4.6 19.4 6 18M18 6l1.4-1.4"/>',
    "thermometer": '<path d="M14 14.8V5a2 2 0 0 0-4 0v9.8a4 4 0 1 0 4 0z"/><path d="M12 9v8"/>',
    "inbox": '<path d="M21.5 12.5H16l-2 3h-4l-2-3H2.5"/><path d="M5.6 5.1 2.5 12.5V18a1.5 1.5 0 0 0 1.5 1.5h16a1.5 1.5 0 0 0 1.5-1.5v-5.5l-3.1-7.4a1.5 1.5 0 0 0-1.4-.9H7a1.5 1.5 0 0 0-1.4.9z"/>',
    "key": '<circle cx="7.5" cy="15.5" r="4"/><path d="m10.4 12.6 9.1-9.1"/><path d="m16 7 2.5 2.5"/><path d="m13.5 9.5 2 2"/>',
    "shield": '<path d="M12 21s7.5-3.5 7.5-9.5V5.5L12 3 4.5 5.5v6C4.5 17.5 12 21 12 21z"/>',
    "bar-chart": '<path d="M6 20v-6M12 20V4M18 20v-10"/>',
    "note": '<path d="M14 3H6.5A1.5 1.5 0 0 0 5 4.5v15A1.5 1.5 0 0 0 6.5 21h11a1.5 1.5 0 0 0 1.5-1.5V8z"/><path d="M14 3v5h5"/><path d="M9 13h6M9 17h4"/>',
    "calendar": '<rect x="3.5" y="5" width="17" height="15.5" rx="2"/><path d="M8 3v4M16 3v4M3.5 10h17"/>',
    "cart": '<circle cx="9" cy="20" r="1.3"/><circle cx="18" cy="20" r="1.3"/><path d="M2.5 3.5h2.8l2.4 11.3a1.5 1.5 0 0 0 1.5 1.2h8.6a1.5 1.5 0 0 0 1.5-1.1L21 7H6.1"/>',
    "eye": '<path d="M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z"/><circle cx="12" cy="12" r="3"/>',
    "layers": '<path d="m12 3 9 5-9 5-9-5z"/><path d="m3 13 9 5 9-5"/>',
    "bell": '<path d="M6 9.5a6 6 0 0 1 12 0c0 5.5 2.5 7.5 2.5 7.5h-17S6 15 6 9.5z"/><path d="M10.2 20.5a2 2 0 0 0 3.6 0"/>',
}
# an unknown name draws a circle rather than nothing
FALLBACK = '<circle cx="12" cy="12" r="8"/>'


@lru_cache(maxsize=1024)
def icon_markup(name: str, size: str = "20", icon_class: str = "", label: str = "") -> SafeString:
    """The icon's ``<svg>``, followed by the newline ``includes/icon.html`` always ended with."""
    classes = f"icon icon-{escape(name)}" + (f" {escape(icon_class)}" if icon_class else "")
    accessible = f'role="img" aria-label="{escape(label)}"' if label else 'aria-hidden="true"'
    size = escape(size)
    return mark_safe(
        f'<svg class="{classes}" width="{size}" height="{size}" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
        f'stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" {accessible} focusable="false">'
        f"{ICON_PATHS.get(name, FALLBACK)}</svg>\n"
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@register.simple_tag(takes_context=True)
def icon_svg(context: Context) -> SafeString:
    """``includes/icon.html``: the context's ``name``, ``icon_size``, ``icon_class``, ``icon_label``."""
    name = str(context["name"]) if "name" in context else ""  # as {{ name }} prints it
    return icon_markup(name, _text(context.get("icon_size") or 20),
                       _text(context.get("icon_class") or ""), _text(context.get("icon_label") or ""))


def _score(score: Any) -> str:
    """``{{ score|floatformat:"-2" }}``; whole numbers (nearly every score) without its cost."""
    if type(score) is int and not settings.USE_THOUSAND_SEPARATOR:
        return str(score)
    return conditional_escape(floatformat(score, "-2"))


@register.simple_tag(takes_context=True)
def tag_chip_html(context: Context) -> SafeString:
    """``includes/tag_chip.html``: ``name``, ``score``, ``strongest``, ``colour``, ``href``, ``size``."""
    name = conditional_escape(context["name"] if "name" in context else "")
    score, strongest = context.get("score"), context.get("strongest")
    colour, href = context.get("colour"), context.get("href")
    shown = bool(score) or score == 0
    score_text = _score(score) if shown else ""
    classes = "chip" + (" chip-strong" if strongest else "") + (" chip-sm" if context.get("size") == "sm" else "")
    parts = [f'<a href="{conditional_escape(href)}"' if href else "<span", f' class="{classes}"']
    if colour:
        parts.append(f' style="--chip-colour: {conditional_escape(colour)}"')
    score_part = " · " + _("score %(score)s") % {"score": score_text} if shown else ""
    strongest_part = " · " + _("strongest") if strongest else ""
    parts.append(f' title="{name}{score_part}{strongest_part}">')
    if strongest:
        parts.append(icon_markup("star", "12"))
    elif colour:
        parts.append('<span class="chip-dot"></span>')
    parts.append(f'<span class="chip-name">{name}</span>')
    if shown:
        parts.append(f'<span class="score">{score_text}</span>')
    parts.append("</a>" if href else "</span>")
    return mark_safe("".join(parts))


_TEMPERATURES = {"hot": ("flame", gettext_lazy("Hot"), gettext_lazy("Hot lead")),
                 "warm": ("sun", gettext_lazy("Warm"), gettext_lazy("Warm lead")),
                 "cold": ("snowflake", gettext_lazy("Cold"), gettext_lazy("Cold lead"))}


@register.simple_tag(takes_context=True)
def temperature_badge_html(context: Context) -> SafeString:
    """``includes/temperature_badge.html``: ``temperature`` and an optional ``title``."""
    temperature, title = context.get("temperature"), context.get("title")
    known = _TEMPERATURES.get(temperature) if isinstance(temperature, str) else None
    if known is None:
        title = title or _("No temperature yet")
        return mark_safe(f'<span class="temp" title="{conditional_escape(title)}">—</span>')
    icon, text, default_title = known
    return mark_safe(f'<span class="temp temp-{temperature}" title="{conditional_escape(title or default_title)}">'
                     f"{icon_markup(icon)}{conditional_escape(text)}</span>")


# The static scripts' own words (toasts, the confirm dialog, "Copied"), translated with the page and
# read by app.js from a JSON block (MH.t): no JavaScriptCatalog request, no inline code under the CSP.
# "%(status)s" is filled in by the script.
JS_STRINGS = {
    "dismiss": gettext_lazy("Dismiss"),
    "confirm": gettext_lazy("Confirm"),
    "copied": gettext_lazy("Copied"),
    "error_status": gettext_lazy("Something went wrong (%(status)s). Please try again."),
    "forbidden": gettext_lazy("You don't have permission to do that."),
    "not_found": gettext_lazy("That item no longer exists."),
    "too_many": gettext_lazy("Too many requests. Wait a moment and try again."),
    "not_accepted": gettext_lazy("The request was not accepted (%(status)s)."),
    "offline": gettext_lazy("Could not reach the server. Check your connection and try again."),
    "page_changed": gettext_lazy("The page changed while you were deciding; please try again."),
    "chart_error": gettext_lazy("Chart data could not be read."),
}


@register.simple_tag
def js_strings() -> SafeString:
    """``<script type="application/json" id="mh-strings">`` with ``JS_STRINGS`` in the active language."""
    return json_script({key: str(text) for key, text in JS_STRINGS.items()}, "mh-strings")


@register.filter(name="role_label")
def role_label_filter(role: str) -> str:
    """``{{ group.name|role_label }}``: a role's display name (the Group names stay English)."""
    return role_label(role)

