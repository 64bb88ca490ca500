"""``python manage.py seed_demo``: loads the demo shop once; --reset replaces it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from contacts.models import Contact


@pytest.mark.django_db
def test_seed_demo_loads_the_shop_and_demo_users():
    # given an empty database
    out = StringIO()
    # when the command runs with a small size
    call_command("seed_demo", contacts=200, stdout=out)
    # then the contacts and the demo logins exist, and it says what it made
    assert Contact.objects.count() == 200
    assert get_user_model().objects.filter(username__in=["admin", "marketer", "sales", "sales2"]).count() == 4
    assert "200 contacts" in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_refuses_a_database_with_contacts_unless_reset():
    # given a seeded database
    call_command("seed_demo", contacts=50, stdout=StringIO())
    # when it runs again without --reset
    # then it refuses with a clear message
    with pytest.raises(CommandError, match="--reset"):
        call_command("seed_demo", contacts=50, stdout=StringIO())
    # and with --reset it replaces the data
    call_command("seed_demo", contacts=80, reset=True, stdout=StringIO())
    assert Contact.objects.count() == 80


@pytest.mark.django_db
def test_seed_demo_rejects_a_bad_size():
    # given / when / then: a size below 1 is refused, naming the option
    with pytest.raises(CommandError, match="--contacts"):
        call_command("seed_demo", contacts=0, stdout=StringIO())
