"""What the areas above contacts add to its screens, its API and its GDPR export — without
contacts importing them.

Contacts knows emails, names, tags, consents, notes and owners. The areas above it derive more
from a contact — leads the meaning of the lead score (temperature) and funnel stages, loyalty
tiers, segments memberships, automation the names of rules — and the contact list, the card, the
API and the GDPR export show it. Each area registers its parts here in its ``AppConfig.ready()``;
contacts renders whatever is registered. A part that is not registered is simply not shown, so
contacts runs (and is tested) on its own.

Registration happens once per process, at start-up; the registries are read-only afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from django.utils.functional import Promise
from django.utils.translation import gettext as _

if TYPE_CHECKING:
    import django_filters

    from contacts.models import Contact


# --- the contact list's filters -------------------------------------------------------------------
@dataclass(frozen=True)
class ListFilter:
    """A filter of the contact list (and of "all matching" bulk actions) owned by another area.

    ``filter`` is a django-filter ``Filter`` whose ``method`` is a callable
    ``(queryset, name, value) -> queryset``; it must stay a SQL condition (bulk actions compile the
    filtered queryset into ``INSERT … SELECT``). ``choices`` (for choice filters) is called once per
    list request. ``group`` is where the list shows it: ``"main"`` beside the tag filter,
    ``"more"`` under "More filters"; within a group filters are shown by ``order``.
    """

    name: str
    filter: django_filters.Filter
    group: Literal["main", "more"] = "more"
    order: int = 100
    choices: Callable[[], list[tuple[str, str]]] | None = None


LIST_FILTERS: dict[str, ListFilter] = {}


def list_filter_register(list_filter: ListFilter) -> None:
    LIST_FILTERS[list_filter.name] = list_filter


def list_filters(group: str | None = None) -> list[ListFilter]:
    entries = [entry for entry in LIST_FILTERS.values() if group is None or entry.group == group]
    return sorted(entries, key=lambda entry: entry.order)


# --- what the lead score means ----------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreLabel:
    """Words beside the lead score (``Contact.score``) on the list and the card.

    ``rows(contacts)`` → ``{contact id: HTML}`` shown after the score in list rows (one call per
    page, so a label costs no query per row); ``card(contact)`` → ``(badge, note)``: HTML after the
    contact's name in the card's title and text after the score in its subtitle. HTML must be safe
    (``format_html``/``render_to_string``).
    """

    rows: Callable[[Sequence[Contact]], dict[int, str]]
    card: Callable[[Contact], tuple[str, str]]


SCORE_LABELS: list[ScoreLabel] = []


def score_label_register(label: ScoreLabel) -> None:
    SCORE_LABELS.append(label)


# --- the contact card -------------------------------------------------------------------------------
# contact → safe HTML shown in the card's header under the title (e.g. leads: why the lead is hot);
# "" shows nothing. Called once per card view, so each costs at most a query or two.
CardSummary = Callable[["Contact"], str]
CARD_SUMMARIES: list[CardSummary] = []


def card_summary_register(summary: CardSummary) -> None:
    CARD_SUMMARIES.append(summary)


@dataclass(frozen=True)
class CardPanel:
    """A panel of the contact card that another area renders: the card loads ``url_name`` (with
    ``contact_id``) into it when it opens. Shown by ``order``."""

    url_name: str
    title: str | Promise  # a lazy translation: the panel is registered at start-up
    order: int = 100

    @property
    def slug(self) -> str:
        return self.url_name.split(":")[0]


CARD_PANELS: list[CardPanel] = []


def card_panel_register(panel: CardPanel) -> None:
    CARD_PANELS.append(panel)
    CARD_PANELS.sort(key=lambda entry: entry.order)


@dataclass(frozen=True)
class TimelineEffect:
    """One thing an event caused on the contact, for the card's timeline: ``kind`` is ``"tag"``,
    ``"score"`` or ``"stage"`` (it picks the badge's colour), ``rule_id`` the rule that did it."""

    event_pk: int | None
    kind: str
    text: str
    rule_id: int | None


# (contact, event ids on the page) → what those events caused; one query per source.
TimelineSource = Callable[["Contact", list[int]], Iterable[TimelineEffect]]
TIMELINE_SOURCES: list[TimelineSource] = []


def timeline_source_register(source: TimelineSource) -> None:
    TIMELINE_SOURCES.append(source)


# rule ids → their names; a rule with no name found is shown as "rule #id".
RuleNames = Callable[[set[int]], dict[int, str]]
RULE_NAMERS: list[RuleNames] = []


def rule_names_register(namer: RuleNames) -> None:
    RULE_NAMERS.append(namer)


def rule_names(rule_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {rule_id for rule_id in rule_ids if rule_id is not None}
    names: dict[int, str] = {}
    for namer in RULE_NAMERS:
        if ids:
            names.update(namer(ids))
    return names


def rule_label(names: dict[int, str], rule_id: int | None) -> str:
    """A rule's name from ``rule_names``; "rule #id" for one not found (deleted since), "" for none."""
    if not rule_id:
        return ""
    return names.get(rule_id) or _("rule #%(id)s") % {"id": rule_id}


# --- the API's and the GDPR export's contact --------------------------------------------------------
@dataclass
class ContactParts:
    """Keys other areas add to a contact's JSON: ``representation`` to what
    ``GET /api/v1/contacts/{email}`` returns (and the export starts from), ``export`` to the GDPR
    export only (histories). Each callable takes the contact and returns a dict of new keys."""

    representation: list[Callable[[Contact], dict[str, Any]]] = field(default_factory=list)
    export: list[Callable[[Contact], dict[str, Any]]] = field(default_factory=list)


CONTACT_PARTS = ContactParts()


def representation_part_register(part: Callable[[Contact], dict[str, Any]]) -> None:
    CONTACT_PARTS.representation.append(part)


def export_part_register(part: Callable[[Contact], dict[str, Any]]) -> None:
    CONTACT_PARTS.export.append(part)
