"""The hot-leads list: one FilterSet, all in SQL (index on score; growth from ``ScoreTrend``)."""

from __future__ import annotations

import django_filters
from django.db.models import F, IntegerField, Q, QuerySet
from django.db.models.functions import Coalesce

from contacts.models import Contact
from leads.models import TemperatureSettings
from leads.services import OPEN_STATUSES, STATUSES
from leads.temperature import temperature_q

SORTS = {
    "score": ("-score", "id"),
    "growth": ("-points_7d", "-score", "id"),
    "activity": (F("last_activity_at").desc(nulls_last=True), "id"),
}


def hot_leads_base() -> QuerySet:
    return (
        Contact.objects.select_related("owner")
        .annotate(points_7d=Coalesce(F("score_trend__points_7d"), 0, output_field=IntegerField()))
        .only(
            "id", "email", "first_name", "last_name", "score", "lead_status", "lead_status_reason",
            "lead_status_changed_at", "last_activity_at", "owner", "owner__username", "owner__first_name",
            "owner__last_name",
        )
    )


class HotLeadFilter(django_filters.FilterSet):
    """``temperature`` hot (default) | warm | cold | any; ``owner`` mine | unassigned | others;
    ``status`` open (default) | any | one status; ``growth`` up | flat | down; ``sort`` score |
    growth | activity; ``q`` email or name."""

    q = django_filters.CharFilter(method="filter_q", label="Search")
    temperature = django_filters.ChoiceFilter(
        choices=[("hot", "Hot"), ("warm", "Warm"), ("cold", "Cold"), ("any", "Any temperature")],
        method="filter_temperature", empty_label=None,
    )
    owner = django_filters.ChoiceFilter(
        # "none" is the contact list's spelling of unassigned; both work here.
        choices=[("mine", "Mine"), ("unassigned", "Unassigned"), ("none", "Unassigned"), ("others", "Held by others")],
        method="filter_owner", empty_label="Anyone's",
    )
    status = django_filters.ChoiceFilter(
        choices=[("open", "Open (new, contacted, qualified)"), ("any", "Any status")]
        + [(status, status.capitalize()) for status in STATUSES],
        method="filter_status", empty_label=None,
    )
    growth = django_filters.ChoiceFilter(
        choices=[("up", "Growing (7 days)"), ("flat", "No change (7 days)"), ("down", "Cooling (7 days)")],
        method="filter_growth", empty_label="Any growth",
    )
    score_min = django_filters.NumberFilter(field_name="score", lookup_expr="gte", label="Score from")
    score_max = django_filters.NumberFilter(field_name="score", lookup_expr="lte", label="Score to")
    sort = django_filters.ChoiceFilter(
        choices=[("score", "Highest score"), ("growth", "Fastest growth"), ("activity", "Latest activity")],
        method="filter_sort", empty_label=None,
    )

    class Meta:
        model = Contact
        fields: list[str] = []

    def __init__(self, data=None, *args, user=None, thresholds: TemperatureSettings | None = None, **kwargs):
        data = data.copy() if data is not None else {}
        # Defaults live here, so a bare /leads/hot/ is "open hot leads by score".
        for name, default in (("temperature", "hot"), ("status", "open"), ("sort", "score")):
            if not data.get(name):
                data[name] = default
        super().__init__(data, *args, **kwargs)
        self.user = user
        self.thresholds = thresholds or TemperatureSettings.current()

    def filter_q(self, queryset, name, value):
        value = (value or "").strip()
        if not value:
            return queryset
        if "@" in value:
            return queryset.filter(email__startswith=value.lower())
        search = getattr(queryset, "search", None)
        if search is not None:  # the contacts app's full-text search (indexed)
            return search(value)
        return queryset.filter(Q(email__icontains=value) | Q(first_name__icontains=value) | Q(last_name__icontains=value))

    def filter_temperature(self, queryset, name, value):
        if value in ("hot", "warm", "cold"):
            return queryset.filter(temperature_q(value, self.thresholds))
        return queryset

    def filter_owner(self, queryset, name, value):
        if value == "mine" and self.user is not None:
            return queryset.filter(owner=self.user)
        if value in ("unassigned", "none"):
            return queryset.filter(owner__isnull=True)
        if value == "others" and self.user is not None:
            return queryset.filter(owner__isnull=False).exclude(owner=self.user)
        return queryset

    def filter_status(self, queryset, name, value):
        if value == "open":
            return queryset.filter(lead_status__in=OPEN_STATUSES)
        if value in STATUSES:
            return queryset.filter(lead_status=value)
        return queryset

    def filter_growth(self, queryset, name, value):
        if value == "up":
            return queryset.filter(score_trend__points_7d__gt=0)
        if value == "down":
            return queryset.filter(score_trend__points_7d__lt=0)
        if value == "flat":
            return queryset.filter(Q(score_trend__isnull=True) | Q(score_trend__points_7d=0))
        return queryset

    def filter_sort(self, queryset, name, value):
        return queryset.order_by(*SORTS.get(value, SORTS["score"]))

    @property
    def qs(self):
        queryset = super().qs
        if not queryset.query.order_by:
            queryset = queryset.order_by(*SORTS["score"])
        return queryset
