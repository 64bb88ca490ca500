"""What a hot-leads row shows: the values worked out in the view once per page or row read as the
per-cell template tags did, in English and Polish, and a row returned by an action is the page's row."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import Note
from leads.models import ScoreTrend, TemperatureSettings
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


def _row(html: str, contact_id: int) -> str:
    match = re.search(rf'<tr id="lead-{contact_id}" class="lead-row">.*?</tr>', html, re.S)
    assert match, f"no row for {contact_id}"
    return match.group(0)


@pytest.fixture
def lost_lead(marketer):
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    lead = ContactFactory(first_name="Ala", last_name="Nowak", email="ala@example.com", lead_status="lost",
                          lead_status_reason="Too <expensive> & slow", last_activity_at=None)
    give_points(lead, 1200, 300, reason="manual")
    give_tag(lead, "kurtki", 5)
    give_tag(lead, "Sport & <Outdoor>", 2)
    ScoreTrend.objects.update_or_create(contact=lead, defaults={"points_7d": -1500})
    Note.objects.create(contact=lead, author=None, text="Call <back>", created_at=timezone.now() - timedelta(days=2))
    return lead


def test_a_row_shows_its_lead_in_english(marketer_client, lost_lead):
    # when a marketer lists every status
    html = marketer_client.get(reverse("leads:hot"), {"status": "any"}).content.decode()
    row = _row(html, lost_lead.pk)
    # then the values read as before: numbers grouped, tooltips translated and escaped
    assert f'<a href="{reverse("contacts:card", args=[lost_lead.pk])}" class="row-link"><strong>Ala Nowak</strong></a>' in row
    assert "<div><strong>1,500</strong></div>" in row and 'class="temp temp-hot"' in row
    assert '<span class="text-danger">-1,500</span>' in row and '<span class="faint">never active</span>' in row
    assert '<li title="Manual change: +1,500 points (2×)"><span class="why-name">Manual change</span>' in row
    assert 'title="Sport &amp; &lt;Outdoor&gt; · score 2"' in row and 'title="kurtki · score 5 · strongest"' in row
    assert 'aria-label="Held by: assign ala@example.com to"' in row
    assert '<option value="lost" selected>Lost</option>' in row
    assert "Lost: Too &lt;expensive&gt; &amp; slow</p>" in row
    assert 'title="Call &lt;back&gt; — someone, ' in row and "— someone, 2\xa0days ago</span>" in row
    assert 'data-label="Status & note"' in row


def test_a_row_shows_its_lead_in_polish(marketer_client, lost_lead):
    # when the marketer's browser asks for Polish
    html = marketer_client.get(reverse("leads:hot"), {"status": "any"}, **POLISH).content.decode()
    row = _row(html, lost_lead.pk)
    # then numbers are grouped the Polish way and every word, plural and tooltip is Polish
    assert "<div><strong>1\xa0500</strong></div>" in row and '<span class="text-danger">-1\xa0500</span>' in row
    assert '<span class="faint">jeszcze nieaktywny</span>' in row
    assert '<li title="Ręczna zmiana: +1\xa0500 punktów (2×)"><span class="why-name">Ręczna zmiana</span>' in row
    assert 'title="Sport &amp; &lt;Outdoor&gt; · punkty: 2"' in row
    assert 'aria-label="Opiekun: przydziel ala@example.com do"' in row and '<option value="">Bez opiekuna</option>' in row
    assert '<option value="lost" selected>Przegrany</option>' in row and 'aria-label="Notatka: ala@example.com"' in row
    assert "Przegrany: Too &lt;expensive&gt; &amp; slow</p>" in row and "— ktoś, 2\xa0dni temu</span>" in row
    assert 'data-label="Status i notatka"' in row


def test_the_row_an_action_returns_is_the_pages_row(sales_client, sales):
    # given an unassigned hot lead with a note by its seller
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    lead = ContactFactory(email="bob@example.com", last_activity_at=timezone.now() - timedelta(hours=3))
    give_points(lead, 40)
    give_tag(lead, "kurtki", 3)
    ScoreTrend.objects.update_or_create(contact=lead, defaults={"points_7d": 40})
    Note.objects.create(contact=lead, author=sales, text="Met at the fair")
    # when the seller claims it
    returned = sales_client.post(reverse("leads:lead_claim", args=[lead.pk])).content.decode()
    # then the returned row is the row the page now shows
    page = sales_client.get(reverse("leads:hot")).content.decode()
    assert _row(returned, lead.pk) == _row(page, lead.pk)
    assert 'class="btn btn-ghost btn-sm"' in _row(page, lead.pk) and "+40</span>" in _row(page, lead.pk)
