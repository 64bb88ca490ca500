"""What segments add to the contacts area (registered in ``SegmentsConfig.ready()``): the segment
filter of the contact list, the card's segments panel, and saved counts kept right when a contact
is erased (and its queued membership work)."""

from __future__ import annotations

import django_filters
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts.registry import CardPanel, ListFilter, card_panel_register, list_filter_register
from segments.models import Segment, SegmentMember


def filter_segment(queryset: QuerySet, name: str, value: str) -> QuerySet:
    return queryset.filter(Exists(SegmentMember.objects.filter(segment_id=int(value), contact=OuterRef("pk"))))


def segment_choices() -> list[tuple[str, str]]:
    return [(str(pk), name) for pk, name in Segment.objects.order_by("name").values_list("pk", "name")]


def on_contacts_erasing(sender: object, *, contact_ids: list[int], **kwargs: object) -> None:
    """The saved segments' cached counts lose the erased members now, not at their next refresh
    (the membership rows go with the contacts), and the contacts leave the memberships queue (it
    has no constraint on the contact; events/status counts it)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM automation_segmentdirtycontact WHERE contact_id = ANY(%s::bigint[])", [contact_ids])
        cursor.execute(
            """
            UPDATE segments_segment s SET count = greatest(s.count - m.erased, 0)
            FROM (SELECT segment_id, count(*) AS erased FROM segments_segmentmember
                  WHERE contact_id = ANY(%s::bigint[]) GROUP BY segment_id) m
            WHERE m.segment_id = s.id AND s.count IS NOT NULL
            """,
            [contact_ids],
        )


def register() -> None:
    list_filter_register(ListFilter(
        name="segment", group="more", order=10, choices=segment_choices,
        filter=django_filters.ChoiceFilter(choices=[], method=filter_segment, label=_("Segment"),
                                          empty_label=pgettext_lazy("segment", "Any")),
    ))
    card_panel_register(CardPanel("segments:card_panel", _("Segments"), order=30))
