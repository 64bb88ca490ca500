"""What leads add to the contacts area's screens, API and GDPR export (registered in
``LeadsConfig.ready()``): the temperature beside the score and as a list filter, the funnel-stage
filter, the card's lead panel, the points and stage moves on the card's timeline, and the score,
temperature and stages of a contact's JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import django_filters
from django.db.models import Exists, OuterRef, QuerySet
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy

from contacts.models import Contact
from contacts.registry import (
    CardPanel,
    ListFilter,
    ScoreLabel,
    TimelineEffect,
    card_panel_register,
    card_summary_register,
    export_part_register,
    list_filter_register,
    representation_part_register,
    score_label_register,
    timeline_source_register,
)
from leads.models import ContactStage, ScoreChange, Stage, StageTransition, TemperatureSettings
from leads.temperature import temperature_q
from leads.why import score_causes

TEMPERATURE_CHOICES = [("hot", gettext_lazy("Hot")), ("warm", gettext_lazy("Warm")), ("cold", gettext_lazy("Cold"))]
# The list's compact label: the icon at the row's size, no tooltip (the card's badge has one).
_ROW_LABELS = {"hot": ("flame", gettext_lazy("Hot")), "warm": ("sun", gettext_lazy("Warm")),
               "cold": ("snowflake", gettext_lazy("Cold"))}


def filter_temperature(queryset: QuerySet, name: str, value: str) -> QuerySet:
    return queryset.filter(temperature_q(value))


def filter_stage(queryset: QuerySet, name: str, value: str) -> QuerySet:
    return queryset.filter(Exists(ContactStage.objects.filter(stage_id=int(value), contact=OuterRef("pk"))))


def stage_choices() -> list[tuple[str, str]]:
    return [(str(pk), f"{funnel}: {name}") for pk, funnel, name in
            Stage.objects.order_by("funnel__name", "position").values_list("pk", "funnel__name", "name")]


def temperature_rows(contacts: Sequence[Contact]) -> dict[int, str]:
    """Each row's temperature label; the three labels are rendered once per page (an include per
    row is most of a 50-row page's rendering time)."""
    thresholds = TemperatureSettings.current()
    labels = {
        temperature: (f'<span class="temp temp-{temperature}">'
                      f'{render_to_string("includes/icon.html", {"name": icon, "size": 20})}{text}</span>')
        for temperature, (icon, text) in _ROW_LABELS.items()
    }
    return {contact.pk: labels[thresholds.temperature_of(contact.score)] for contact in contacts}


def temperature_card(contact: Contact) -> tuple[str, str]:
    thresholds = TemperatureSettings.current()
    badge = render_to_string("includes/temperature_badge.html",
                             {"temperature": thresholds.temperature_of(contact.score)})
    return badge, _("(warm from %(warm)s, hot from %(hot)s)") % {"warm": thresholds.warm, "hot": thresholds.hot}


def card_summary(contact: Contact) -> str:
    """The card header's "why hot": the three ledger causes that gave the most points."""
    causes = score_causes([contact.pk]).get(contact.pk, [])
    if not causes:
        return ""  # no points yet: the lead panel says so
    thresholds = TemperatureSettings.current()
    return render_to_string("leads/card_header.html", {
        "causes": causes, "temperature": thresholds.temperature_of(contact.score)})


def timeline_effects(contact: Contact, event_pks: list[int]) -> Iterator[TimelineEffect]:
    for event_pk, delta, rule_id in ScoreChange.objects.filter(
            event_pk__in=event_pks, contact=contact).values_list("event_pk", "delta", "rule_id"):
        yield TimelineEffect(event_pk, "score", ngettext("%(delta)s point", "%(delta)s points", abs(delta))
                             % {"delta": f"{delta:+d}"}, rule_id)
    for event_pk, funnel, stage, rule_id in StageTransition.objects.filter(
            event_pk__in=event_pks, contact=contact).values_list("event_pk", "funnel__name", "to_stage__name", "rule_id"):
        yield TimelineEffect(event_pk, "stage", f"→ {stage} ({funnel})", rule_id)


def representation(contact: Contact) -> dict:
    thresholds = TemperatureSettings.current()
    stages = ContactStage.objects.filter(contact=contact).values_list("funnel__name", "stage__name")
    return {"score": contact.score, "temperature": thresholds.temperature_of(contact.score), "stages": dict(stages)}


def _rows(queryset: QuerySet, *fields: str) -> list[dict]:
    return [
        {name: (value.isoformat() if isinstance(value, dt.date | dt.datetime) else value)
         for name, value in zip(fields, row, strict=True)}
        for row in queryset.values_list(*fields)
    ]


def export(contact: Contact) -> dict:
    return {
        "score_history": _rows(ScoreChange.objects.filter(contact=contact).order_by("created_at", "id"),
                               "delta", "reason", "created_at"),
        "stage_history": _rows(StageTransition.objects.filter(contact=contact).order_by("created_at", "id"),
                               "funnel__name", "from_stage__name", "to_stage__name", "created_at"),
    }


def register() -> None:
    list_filter_register(ListFilter(
        name="temperature", group="main", order=10,
        filter=django_filters.ChoiceFilter(choices=TEMPERATURE_CHOICES, method=filter_temperature,
                                           label=gettext_lazy("Temperature"), empty_label=pgettext_lazy("any temperature", "Any")),
    ))
    list_filter_register(ListFilter(
        name="stage", group="more", order=20, choices=stage_choices,
        filter=django_filters.ChoiceFilter(choices=[], method=filter_stage, label=gettext_lazy("Funnel stage"),
                                           empty_label=pgettext_lazy("any funnel stage", "Any")),
    ))
    score_label_register(ScoreLabel(rows=temperature_rows, card=temperature_card))
    card_panel_register(CardPanel("leads:card_panel", gettext_lazy("Lead score & funnels"), order=10))
    card_summary_register(card_summary)
    timeline_source_register(timeline_effects)
    representation_part_register(representation)
    export_part_register(export)
