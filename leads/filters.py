"""The hot-leads list: one FilterSet, all in SQL (index on score; growth from ``ScoreTrend``)."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, F, IntegerField, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from leads.models import ScoreTrend, TemperatureSettings
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

    q = django_filters.CharFilter(method="filter_q", label=_("Search"))
    temperature = django_filters.ChoiceFilter(
        choices=[("hot", _("Hot")), ("warm", _("Warm")), ("cold", _("Cold")), ("any", _("Any temperature"))],
        method="filter_temperature", empty_label=None,
    )
    owner = django_filters.ChoiceFilter(
        # "none" is the contact list's spelling of unassigned; both work here.
        choices=[("mine", _("Mine")), ("unassigned", _("Unassigned")), ("none", _("Unassigned")), ("others", _("Held by others"))],
        method="filter_owner", empty_label=_("Anyone's"),
    )
    status = django_filters.ChoiceFilter(
        choices=[("open", _("Open (new, contacted, qualified)")), ("any", _("Any status"))]
        + list(Contact.LeadStatus.choices),
        method="filter_status", empty_label=None,
    )
    growth = django_filters.ChoiceFilter(
        choices=[("up", _("Growing (7 days)")), ("flat", _("No change (7 days)")), ("down", _("Cooling (7 days)"))],
        method="filter_growth", empty_label=_("Any growth"),
    )
    score_min = django_filters.NumberFilter(field_name="score", lookup_expr="gte", label=_("Score from"))
    score_max = django_filters.NumberFilter(field_name="score", lookup_expr="lte", label=_("Score to"))
    sort = django_filters.ChoiceFilter(
        choices=[("score", _("Highest score")), ("growth", _("Fastest growth")), ("activity", _("Latest activity"))],
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

    def leads(self):
        """What the view paginates: the queryset, or for the growth sort a :class:`GrowthOrdered`
        wrapper that pages through the same rows in the same order using the indexes."""
        if self.form.cleaned_data.get("sort") == "growth":
            return GrowthOrdered(self.qs.order_by(), growth=self.form.cleaned_data.get("growth") or "")
        return self.qs


class GrowthOrdered:
    """The filtered leads ordered by (points in 7 days desc, score desc, id), paged fast.

    ``ORDER BY coalesce(points_7d, 0)`` over a LEFT JOIN cannot use an index, so at a million
    contacts it sorts the whole hot set. The same order is the concatenation of three segments,
    each answered by an index walk: growth > 0 (``scoretrend_7d_idx``, joined to contacts), growth
    = 0 or no trend row (``contact_score_idx`` with an anti-join), growth < 0 (the trend index
    again). A page is cut from the segments with the counts of the ones before it.
    """

    def __init__(self, queryset: QuerySet, *, growth: str = "") -> None:
        self.queryset = queryset
        self.growth = growth

    def _segments(self) -> list[QuerySet]:
        queryset = self.queryset
        # A growth filter already keeps one segment; the planner does not see that the others
        # contradict it and would walk an index for nothing.
        keep = {"up": [0], "flat": [1], "down": [2]}.get(self.growth, [0, 1, 2])
        segments = [
            queryset.filter(score_trend__points_7d__gt=0).order_by("-score_trend__points_7d", "-score", "id"),
            queryset.exclude(Exists(ScoreTrend.objects.filter(contact=OuterRef("pk")).exclude(points_7d=0))).order_by(
                "-score", "id"
            ),
            queryset.filter(score_trend__points_7d__lt=0).order_by("-score_trend__points_7d", "-score", "id"),
        ]
        return [segments[index] for index in keep]

    def order_by(self, *fields) -> QuerySet:
        """For counting (the paginator counts ``object_list.order_by()``)."""
        return self.queryset.order_by(*fields)

    def count(self) -> int:
        return self.queryset.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index : index + 1][0]
        start, stop = index.start or 0, index.stop
        rows: list = []
        skip = start
        for segment in self._segments():
            wanted = (stop - start - len(rows)) if stop is not None else None
            if wanted is not None and wanted <= 0:
                break
            part = list(segment[skip : skip + wanted] if wanted is not None else segment[skip:])
            rows.extend(part)
            if part:
                skip = 0
            else:
                # this segment ends before ``skip``: count it to know how far into the next to go
                skip = max(0, skip - segment.count())
        return rows
