"""The header bell's count comes with the page (no extra request per page view) and keeps polling."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ContactFactory
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db


def test_a_page_shows_the_unread_count_without_fetching_the_bell(sales, sales_client):
    # given two alerts for the seller
    for _ in range(2):
        give_points(ContactFactory(owner=sales), 100)
    # when a page is opened
    body = sales_client.get(reverse("contacts:list")).content.decode()
    # then the bell already shows 2, and it is refreshed by polling and events only, not on load
    bell = body[body.index('id="notification-bell"'):body.index("</a>", body.index('id="notification-bell"'))]
    assert 'data-unread="2"' in bell
    assert "2 unread notifications" in bell
    assert 'hx-trigger="every 20s, notifications-changed from:body"' in bell


def test_without_unread_alerts_the_page_says_so(sales_client):
    body = sales_client.get(reverse("dashboard")).content.decode()
    assert "No unread notifications" in body
    assert "data-unread" not in body
