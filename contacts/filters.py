"""The contact list's one FilterSet. Every filter is an indexed SQL condition; nothing is
evaluated in Python, so the same queryset can be compiled into a bulk ``INSERT … SELECT``.

Filters on what other areas derive (temperature, funnel stage, loyalty tier, segment) are theirs:
they register them in ``contacts.registry`` and the FilterSet adds them per instance."""

from __future__ import annotations

import copy
import datetime as dt
from functools import cached_property

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import DurationField, Exists, F, FilteredRelation, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Lower
from django.forms import BoundField
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from contacts.countries import ISO_COUNTRY_CODES
from contacts.models import CONSENT_CHANNEL_LABELS, CONSENT_CHANNELS, Consent, Contact, ContactTag, Tag, tag_key
from contacts.registry import list_filters
from contacts.tag_names import tag_suggestions
from core.roles import SALES

CONSENT_CHOICES = [
    (f"{channel}:{state}", format_lazy("{channel}: {state}", channel=CONSENT_CHANNEL_LABELS[channel], state=label))
    for channel in CONSENT_CHANNELS
    for state, label in (("granted", _("granted")), ("withdrawn", _("withdrawn")), ("none", _("never asked")))
]
SORT_CHOICES = [
    ("-score", _("Score, highest first")),
    ("score", _("Score, lowest first")),
    ("-last_activity", _("Recently active first")),
    ("last_activity", _("Least recently active first")),
    ("-created", _("Newest first")),
    ("created", _("Oldest first")),
]
SORT_ORDER = {
    "-score": ("-score", "id"),
    "score": ("score", "-id"),
    "-last_activity": (F("last_activity_at").desc(nulls_last=True), "-id"),
    "last_activity": (F("last_activity_at").asc(nulls_first=True), "id"),
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
}
# The same orders by expressions no index serves. For a filter matching few contacts the planner
# otherwise may walk the sort's index from the top and test every contact until a page is found:
# ~15,000 tests (~120 ms) for a 700-contact tag whose contacts score low, ~10× that at 1M. Started
# from the filter's own index, the few matching rows are read and sorted (~6 ms).
_UNINDEXED = Value(0)
_NO_TIME = Value(dt.timedelta(0), output_field=DurationField())
SORT_ORDER_FROM_FILTERS = {
    "-score": ((F("score") + _UNINDEXED).desc(), "id"),
    "score": ((F("score") + _UNINDEXED).asc(), "-id"),
    "-last_activity": ((F("last_activity_at") + _NO_TIME).desc(nulls_last=True), "-id"),
    "last_activity": ((F("last_activity_at") + _NO_TIME).asc(nulls_first=True), "id"),
    "-created": ((F("created_at") + _NO_TIME).desc(), "-id"),
    "created": ((F("created_at") + _NO_TIME).asc(), "id"),
}
# ``sort=tag:<name>``: the contacts that have the tag, its score highest first. The join on one
# tag id walks contacttag_tag_score_idx (tag, score) backwards; ties are ordered by contact id.
TAG_SORT_PREFIX = "tag:"


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def owner_choices() -> list[tuple[str, str]]:
    users = get_user_model().objects.filter(Q(groups__name=SALES) | Q(is_superuser=True)).distinct().order_by("username")
    return [("none", gettext("Unassigned"))] + [(str(user.pk), user.get_full_name() or user.username) for user in users]


class ContactFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label=_("Search"),
                                  widget=forms.TextInput(attrs={"placeholder": _("Email or name…"), "type": "search"}))
    tag = django_filters.CharFilter(method="filter_tag", label=_("Tag"),
                                    widget=forms.TextInput(attrs={"placeholder": _("e.g. kurtki"), "list": "tag-options"}))
    tag_min = django_filters.NumberFilter(method="filter_noop", label=_("Min. score"), min_value=1,
                                          widget=forms.NumberInput(attrs={"placeholder": "1", "min": 1}))
    country = django_filters.CharFilter(method="filter_country", label=_("Country"),
                                        widget=forms.TextInput(attrs={"placeholder": "PL", "maxlength": 2}))
    city = django_filters.CharFilter(method="filter_city", label=_("City"))
    consent = django_filters.ChoiceFilter(choices=CONSENT_CHOICES, method="filter_consent", label=_("Consent"),
                                          empty_label=_("Any"))
    owner = django_filters.ChoiceFilter(choices=[], method="filter_owner", label=_("Owner"), empty_label=_("Anyone"))
    created_after = django_filters.DateFilter(method="filter_created_after", label=_("Created from"),
                                              widget=forms.DateInput(attrs={"type": "date"}))
    created_before = django_filters.DateFilter(method="filter_created_before", label=_("Created to"),
                                               widget=forms.DateInput(attrs={"type": "date"}))
    # a plain value, not a ChoiceFilter: any tag's score is a sort (``tag:<name>``), see sort_options
    sort = django_filters.CharFilter(method="filter_noop", label=_("Sort"))

    class Meta:
        model = Contact
        fields: list[str] = []

    def __init__(self, data=None, *args, **kwargs) -> None:
        super().__init__(data, *args, **kwargs)
        self.filters["owner"].extra["choices"] = owner_choices()
        for entry in list_filters():
            list_filter = copy.deepcopy(entry.filter)
            list_filter.parent = self
            list_filter.field_name = list_filter.field_name or entry.name
            if entry.choices is not None:
                list_filter.extra["choices"] = entry.choices()
            self.filters[entry.name] = list_filter

    def extra_fields(self, group: str) -> list[BoundField]:
        """The bound form fields of the registered filters shown in ``group``, in order."""
        return [self.form[entry.name] for entry in list_filters(group)]

    @property
    def main_extra_fields(self) -> list[BoundField]:
        return self.extra_fields("main")

    @property
    def more_extra_fields(self) -> list[BoundField]:
        return self.extra_fields("more")

    @property
    def more_filters_used(self) -> bool:
        """Whether a filter under "More filters" has a value (the section then opens by itself)."""
        names = ["consent", "owner", *(entry.name for entry in list_filters("more")), "created_after", "created_before"]
        return any(self.form[name].value() for name in names)

    # --- the filters -------------------------------------------------------------------------
    def filter_noop(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset  # applied together with another filter (tag_min) or in .qs (sort)

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.search(value)

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        key = tag_key(value)
        if not key:
            return queryset
        tag_id = Tag.objects.filter(key=key).values_list("pk", flat=True).first()
        if tag_id is None:
            return queryset.none()  # an unknown tag matches nobody
        minimum = self.form.cleaned_data.get("tag_min") or 1
        # The tag id as a constant (not a join on its name) lets the planner use the tag's
        # statistics: drive from the (tag_id, score) index for a rare tag, probe the primary key
        # while walking the sort order for a common one.
        return queryset.filter(
            Exists(ContactTag.objects.filter(contact=OuterRef("pk"), tag_id=tag_id, score__gte=minimum))
        )

    def filter_country(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        code = value.strip().upper()
        if code and code not in ISO_COUNTRY_CODES:
            return queryset.none()
        return queryset.filter(country=code) if code else queryset

    def filter_city(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        city = value.strip().lower()
        # Lower(city) matches the contact_city_lower_idx expression index.
        return queryset.alias(city_lower=Lower("city")).filter(city_lower=city) if city else queryset

    # Day boundaries in the site's time zone as timestamps, so the created_at index serves the range.
    def filter_created_after(self, queryset: QuerySet, name: str, value: dt.date) -> QuerySet:
        return queryset.filter(created_at__gte=_day_start(value))

    def filter_created_before(self, queryset: QuerySet, name: str, value: dt.date) -> QuerySet:
        return queryset.filter(created_at__lt=_day_start(value + dt.timedelta(days=1)))

    def filter_consent(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        channel, _, state = value.partition(":")
        consents = Consent.objects.filter(contact=OuterRef("pk"), channel=channel)
        if state == "none":
            return queryset.filter(~Exists(consents))
        return queryset.filter(Exists(consents.filter(granted=state == "granted")))

    def filter_owner(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "none":
            return queryset.filter(owner__isnull=True)
        return queryset.filter(owner_id=int(value))

    # --- sorting --------------------------------------------------------------------------------
    @property
    def sort_value(self) -> str:
        """The sort in effect: one of SORT_ORDER, ``tag:<name>``, or the default (score)."""
        value = ((self.form.cleaned_data.get("sort") if self.form.is_valid() else None) or "").strip()
        if value in SORT_ORDER or (value.startswith(TAG_SORT_PREFIX) and tag_key(value[len(TAG_SORT_PREFIX):])):
            return value
        return "-score"

    @property
    def sort_tag_name(self) -> str:
        """The tag whose score sorts the list ("" when another sort is in effect)."""
        value = self.sort_value
        return value[len(TAG_SORT_PREFIX):].strip() if value.startswith(TAG_SORT_PREFIX) else ""

    @cached_property
    def sort_tag_id(self) -> int | None:
        name = self.sort_tag_name
        return Tag.objects.filter(key=tag_key(name)).values_list("pk", flat=True).first() if name else None

    @property
    def sort_tag_suggestions(self) -> list[str]:
        """Existing tags close to an unknown sort tag ("did you mean")."""
        return tag_suggestions(self.sort_tag_name) if self.sort_tag_name and self.sort_tag_id is None else []

    def sort_options(self) -> list[tuple[str, str]]:
        """The Sort select: the fixed orders, then a tag's score for the tag being filtered on and
        for the tag sorting now (so a shared ``?sort=tag:kurtki`` link shows what it does)."""
        options = list(SORT_CHOICES)
        names: list[str] = []
        filtered_tag = (self.form.cleaned_data.get("tag") if self.form.is_valid() else "") or ""
        for name in (filtered_tag.strip(), self.sort_tag_name):
            if name and tag_key(name) not in {tag_key(seen) for seen in names}:
                names.append(name)
        options += [(f"{TAG_SORT_PREFIX}{name}", gettext("“%(tag)s” score, highest first") % {"tag": name})
                    for name in names]
        return options

    @property
    def qs(self) -> QuerySet:
        return self._sorted(super().qs, from_filters=False)

    def qs_few(self) -> QuerySet:
        """``qs`` for when the filters match few contacts (a page's worth to a few thousand):
        the same rows in the same order, planned from the filters instead of the sort's index."""
        return self._sorted(super().qs, from_filters=True)

    def _sorted(self, queryset: QuerySet, *, from_filters: bool) -> QuerySet:
        if not self.sort_tag_name:
            orders = SORT_ORDER_FROM_FILTERS if from_filters else SORT_ORDER
            return queryset.order_by(*orders[self.sort_value])
        if self.sort_tag_id is None:
            return queryset.none()  # an unknown tag: nobody has it (the page says so)
        # An inner join on the one (contact, tag) row: the tag id is a constant so the planner can
        # read contacttag_tag_score_idx in score order and stop after a page.
        queryset = (
            queryset.annotate(sort_tag=FilteredRelation("contact_tags", condition=Q(contact_tags__tag_id=self.sort_tag_id)))
            .filter(sort_tag__score__isnull=False)
            .annotate(sort_tag_score=F("sort_tag__score"))
        )
        if from_filters:
            return queryset.order_by((F("sort_tag_score") + _UNINDEXED).desc(), "id")
        return queryset.order_by("-sort_tag_score", "id")

    @property
    def is_filtered(self) -> bool:
        if not self.form.is_valid():
            return False
        # a tag's sort keeps only the contacts that have the tag
        return bool(self.sort_tag_name) or any(
            value not in (None, "") for key, value in self.form.cleaned_data.items() if key != "sort")
