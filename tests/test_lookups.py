"""``__any``: the same rows as ``__in``, with the list bound as one array parameter."""

from __future__ import annotations

import pytest

from contacts.models import Contact, ContactTag
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def test_any_selects_what_in_selects_on_keys_and_foreign_keys():
    contacts = [ContactFactory() for _ in range(4)]
    for contact in contacts:
        give_tag(contact, "kurtki", 2)
    wanted = [contacts[0].pk, contacts[2].pk, 10**12]
    assert set(Contact.objects.filter(pk__any=wanted)) == set(Contact.objects.filter(pk__in=wanted)) == {
        contacts[0], contacts[2]}
    assert set(ContactTag.objects.filter(contact_id__any=wanted).values_list("contact_id", flat=True)) == {
        contacts[0].pk, contacts[2].pk}
    assert not Contact.objects.filter(pk__any=[]).exists()
    assert Contact.objects.exclude(pk__any=wanted).count() == 2


def test_any_binds_one_parameter_whatever_the_list():
    sql, params = Contact.objects.filter(pk__any=list(range(5000))).values("pk").query.sql_with_params()
    assert len(params) == 1 and "= ANY(%s::bigint[])" in sql
