"""What loyalty adds to the contacts area (registered in ``LoyaltyConfig.ready()``): the tier
filter of the contact list, the card's loyalty panel and the ``tiers`` of a contact's JSON."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts.models import Contact
from contacts.registry import (
    CardPanel,
    ListFilter,
    card_panel_register,
    list_filter_register,
    representation_part_register,
)
from loyalty.models import ContactTier, Tier
from loyalty.services import contact_tiers


def filter_tier(queryset: QuerySet, name: str, value: str) -> QuerySet:
    return queryset.filter(Exists(ContactTier.objects.filter(tier_id=int(value), contact=OuterRef("pk"))))


def tier_choices() -> list[tuple[str, str]]:
    return [(str(pk), f"{program}: {name}") for pk, program, name in
            Tier.objects.order_by("program__name", "min").values_list("pk", "program__name", "name")]


def representation(contact: Contact) -> dict:
    return {"tiers": contact_tiers(contact.pk)}


def register() -> None:
    list_filter_register(ListFilter(
        name="tier", group="more", order=30, choices=tier_choices,
        filter=django_filters.ChoiceFilter(choices=[], method=filter_tier, label=_("Loyalty tier"), empty_label=pgettext_lazy("any loyalty tier", "Any")),
    ))
    card_panel_register(CardPanel("loyalty:card_panel", _("Loyalty"), order=20))
    representation_part_register(representation)
