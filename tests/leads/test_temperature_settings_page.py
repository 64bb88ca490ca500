"""The thresholds page: live preview counts before saving; validation naming the field."""

from __future__ import annotations

import pytest
from django.urls import reverse

from leads.models import TemperatureSettings
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _row(html: str, name: str) -> tuple[str, str]:
    """(count, change) of one temperature row of the preview fragment."""
    import re

    row = re.search(rf'data-preview="{name}">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'<td class="num[^"]*"[^>]*>(.*?)</td>', row, re.S)
    return cells[0].strip(), cells[2].strip()


def _contacts_with_scores(*scores: int) -> None:
    for score in scores:
        ContactFactory(score=score)


def test_preview_counts_what_the_typed_thresholds_would_give(admin_client):
    # given contacts with scores 0, 10, 40, 60, 120 and the default thresholds (50/100)
    _contacts_with_scores(0, 10, 40, 60, 120)
    # when the admin types warm 10 / hot 50
    response = admin_client.get(reverse("leads:settings_preview"), {"warm": "10", "hot": "50"}, headers={"HX-Request": "true"})
    # then the fragment shows the counts those thresholds would give, and the change against now
    assert response.status_code == 200
    html = response.content.decode()
    assert _row(html, "cold") == ("1", "-2")
    assert _row(html, "warm") == ("2", "+1")
    assert _row(html, "hot") == ("2", "+1")
    # and nothing was saved
    assert (TemperatureSettings.current().warm, TemperatureSettings.current().hot) == (50, 100)


def test_preview_explains_invalid_input(admin_client):
    response = admin_client.get(reverse("leads:settings_preview"), {"warm": "80", "hot": "20"})
    assert "must be greater than warm" in response.content.decode()
    assert "not a number" not in admin_client.get(reverse("leads:settings_preview"), {"warm": "1", "hot": "2"}).content.decode()
    assert "whole number" in admin_client.get(reverse("leads:settings_preview"), {"warm": "x", "hot": "2"}).content.decode()


def test_save_valid_thresholds(admin_client, admin):
    response = admin_client.post(
        reverse("leads:settings"), {"warm": 30, "hot": 70, "decay_half_life_days": 90}
    )
    assert response.status_code == 302
    saved = TemperatureSettings.current()
    assert (saved.warm, saved.hot, saved.updated_by, saved.decay_enabled) == (30, 70, admin, False)


def test_invalid_save_rerenders_with_field_errors(admin_client):
    response = admin_client.post(reverse("leads:settings"), {"warm": 70, "hot": 70, "decay_half_life_days": 90})
    assert response.status_code == 200
    assert "hot" in response.context["form"].errors
    assert TemperatureSettings.current().hot == 100


def test_settings_page_renders_history(admin_client):
    admin_client.post(reverse("leads:settings"), {"warm": 5, "hot": 9, "decay_half_life_days": 30, "decay_enabled": "on"})
    response = admin_client.get(reverse("leads:settings"))
    assert response.status_code == 200
    assert any(event.hot == 9 and event.decay_enabled for event in response.context["history"])
