"""Tag names a person typed, checked against the tags that exist: an unknown name silently
matches nobody (a segment of 0, a loyalty metric of 0), so the screens that take a tag name say
so and offer the closest existing names ("did you mean kurtki?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from django.utils.translation import gettext as _

from contacts.models import Tag, tag_key

SUGGESTIONS = 3
# difflib's ratio: 0.6 is its default; "purchse" → "purchase" is 0.93, "kurtk" → "kurtki" 0.91.
CUTOFF = 0.6


def unknown_tag_names(names: Iterable[str]) -> list[str]:
    """The given names (as given, first spelling of each key) that match no tag; one query."""
    wanted: dict[str, str] = {}
    for name in names:
        key = tag_key(name)
        if key and key not in wanted:
            wanted[key] = name.strip()
    if not wanted:
        return []
    known = set(Tag.objects.filter(key__in=list(wanted)).values_list("key", flat=True))
    return [name for key, name in wanted.items() if key not in known]


def tag_suggestions(name: str, *, limit: int = SUGGESTIONS) -> list[str]:
    """The existing tag names closest to ``name`` (case-insensitive), best first."""
    key = tag_key(name)
    if not key:
        return []
    names_by_key = dict(Tag.objects.values_list("key", "name"))
    return [names_by_key[match] for match in difflib.get_close_matches(key, names_by_key, n=limit, cutoff=CUTOFF)]


def unknown_tag_warnings(names: Iterable[str]) -> list[str]:
    """One sentence per unknown name: "No tag is named “PURCHSE”: did you mean “purchase”?"."""
    warnings = []
    for name in unknown_tag_names(names):
        suggestions = tag_suggestions(name)
        if suggestions:
            quoted = _(" or ").join(_("“%(name)s”") % {"name": suggestion} for suggestion in suggestions)
            sentence = _("No tag is named “%(name)s”, so it matches no contact: did you mean %(suggestions)s?") % {
                "name": name, "suggestions": quoted}
        else:
            sentence = _("No tag is named “%(name)s”, so it matches no contact.") % {"name": name}
        warnings.append(sentence)
    return warnings
