"""A filter matching few contacts is planned from the filter (``ContactFilterSet.qs_few``): the
same contacts in the same order as the sort's own plan, for every sort the list offers."""

from __future__ import annotations

import datetime as dt

import pytest
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from contacts.filters import SORT_CHOICES, ContactFilterSet
from contacts.models import Contact
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def contacts():
    # given contacts with repeated scores and creation times, some never active, most with kurtki
    start = timezone.now() - dt.timedelta(days=30)
    made = []
    for index in range(12):
        contact = ContactFactory(email=f"c{index}@example.com", score=[5, 1, 5, 0, 9, 1][index % 6])
        Contact.objects.filter(pk=contact.pk).update(
            created_at=start + dt.timedelta(days=index // 3),
            last_activity_at=None if index % 4 == 0 else start + dt.timedelta(hours=index % 5))
        if index % 3:
            give_tag(contact, "kurtki", 1 + index % 4)
        made.append(contact)
    return made


def ids(queryset) -> list[int]:
    return list(queryset.values_list("pk", flat=True))


@pytest.mark.parametrize("sort", [value for value, _ in SORT_CHOICES] + ["tag:kurtki"])
@pytest.mark.parametrize("filters", ["tag=kurtki", "tag=kurtki&tag_min=3", ""])
def test_planned_from_the_filters_the_rows_and_order_are_the_same(contacts, filters, sort):
    # when the list's queryset is planned from the filters and from the sort
    filterset = ContactFilterSet(QueryDict(f"{filters}&sort={sort}"), queryset=Contact.objects.all())
    # then both give the same contacts in the same order
    expected = ids(filterset.qs)
    assert expected
    assert ids(filterset.qs_few()) == expected


def test_the_list_with_a_rare_tag_shows_its_contacts_by_score(marketer_client, contacts):
    # when a marketer filters the list by a tag few contacts have
    response = marketer_client.get(reverse("contacts:list"), {"tag": "kurtki", "tag_min": 4})
    # then those contacts are shown, highest score first (ties by id)
    shown = [contact.pk for contact in response.context["contacts"]]
    holders = Contact.objects.filter(contact_tags__tag__name="kurtki", contact_tags__score__gte=4)
    assert shown == ids(holders.order_by("-score", "id"))
    assert response.context["count"] == len(shown) and response.context["count_exact"]
