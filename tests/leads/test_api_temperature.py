"""GET|PUT /api/v1/settings/temperature — the contract."""

from __future__ import annotations

import pytest

from leads.models import TemperatureSettings

pytestmark = pytest.mark.django_db

URL = "/api/v1/settings/temperature"


def test_get_returns_the_defaults(admin_api):
    response = admin_api.get(URL)
    assert response.status_code == 200
    assert response.json() == {"warm": 50, "hot": 100}


def test_put_saves_and_get_reads_back(admin_api):
    # when an admin key sets new thresholds
    response = admin_api.put(URL, json={"warm": 30, "hot": 80})
    # then they are answered, stored and read back
    assert response.status_code == 200
    assert response.json() == {"warm": 30, "hot": 80}
    assert admin_api.get(URL).json() == {"warm": 30, "hot": 80}
    assert TemperatureSettings.current().temperature_of(80) == "hot"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"warm": 100, "hot": 100}, "hot"),
        ({"warm": 120, "hot": 100}, "hot"),
        ({"warm": "50", "hot": 100}, "warm"),
        ({"warm": 50.5, "hot": 100}, "warm"),
        ({"warm": True, "hot": 100}, "warm"),
        ({"warm": 50}, "hot"),
        ({"warm": 50, "hot": 10**12}, "hot"),
    ],
)
def test_invalid_thresholds_are_rejected_naming_the_field(admin_api, body, field):
    response = admin_api.put(URL, json=body)
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    # and nothing was stored
    assert admin_api.get(URL).json() == {"warm": 50, "hot": 100}


def test_ingest_key_may_not_change_thresholds(ingest_api):
    assert ingest_api.put(URL, json={"warm": 1, "hot": 2}).status_code == 403


def test_missing_key_is_401():
    from django.test import Client

    assert Client().get(URL).status_code == 401


def test_threshold_changes_are_audited(admin_api):
    from leads.models import TemperatureSettingsEvent

    admin_api.put(URL, json={"warm": 10, "hot": 20})
    assert TemperatureSettingsEvent.objects.filter(warm=10, hot=20).exists()
