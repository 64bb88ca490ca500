"""The leads pages in Polish: the browser's Accept-Language picks the catalogue, Polish plurals take
their three forms, and the English text the other tests read stays the default."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from leads.models import TemperatureSettings
from leads.notifications import _build_email
from tests.factories import ContactFactory
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


def _hot_leads(count: int) -> None:
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 20, "hot": 50})
    for _index in range(count):
        give_points(ContactFactory(), 60)


@pytest.mark.parametrize(("count", "words"), [(1, "1 lead<"), (3, "3 leady<"), (5, "5 leadów<"), (22, "22 leady<")])
def test_the_hot_leads_count_takes_the_polish_plural(sales_client, count, words):
    # given some hot leads
    _hot_leads(count)
    # when a Polish browser opens the page
    body = sales_client.get(reverse("leads:hot"), **POLISH).content.decode()
    # then the page and its count are in Polish
    assert "Gorące leady" in body and "Dlaczego gorący" in body
    assert words in body


def test_english_stays_the_default(sales_client):
    # given
    _hot_leads(2)
    # when no language is asked for
    body = sales_client.get(reverse("leads:hot")).content.decode()
    # then
    assert "Hot leads" in body and "2 leads<" in body and "Gorące" not in body


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("leads:funnels", {}), ("leads:settings", {}), ("leads:model_check", {}), ("leads:notifications", {}),
     ("leads:alert_settings", {})],
)
def test_every_leads_page_is_in_polish(admin_client, name, kwargs):
    # when
    response = admin_client.get(reverse(name, kwargs=kwargs), **POLISH)
    # then the page renders, with its lang and no English page title left
    assert response.status_code == 200
    body = response.content.decode()
    assert not any(english in body for english in ("Lead funnels<", "Lead temperature<", "Scoring model check<",
                                                   "Alert settings<", "No notifications yet"))


def test_a_sellers_alert_email_is_in_their_language(sales):
    # given a seller who chose Polish, and a lead of theirs that became hot
    from marketing_hub.models import UserPreference

    UserPreference.objects.create(user=sales, language="pl")
    lead = ContactFactory(first_name="Jan", last_name="Kowalski", owner=sales)
    # when the email is built (outside any request: the worker has no language of its own)
    with translation.override("en"):
        message = _build_email(sales, [(1, sales.pk, lead.pk, 120, None)], {lead.pk: lead}, digest=False)
    # then the subject and the body are Polish
    assert message.subject == "Gorący lead: Jan Kowalski (wynik 120)"
    assert "Jesteś opiekunem tego leada." in message.body
