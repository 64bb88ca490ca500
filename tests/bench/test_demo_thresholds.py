"""The demo's temperature thresholds sit at the 75th/95th percentile of the scores it generates,
so about a quarter of the scored contacts are warm or hot and one in twenty is hot — not a third
of everyone, which no sales team would accept as "hot"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contacts.models import Contact
from demo import datagen
from leads.models import TemperatureSettings

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_demo_thresholds_are_the_75th_and_95th_percentile_of_positive_scores():
    # given the demo shop generated at 600 contacts
    datagen.generate(contacts=600, demo=True, now=NOW)
    thresholds = TemperatureSettings.current()
    scores = sorted(Contact.objects.filter(score__gt=0).values_list("score", flat=True))
    # then each threshold is its percentile of the positive scores, rounded to tens
    def percentile(share: float) -> int:  # percentile_disc: the first score whose rank reaches the share
        return scores[max(0, -(-int(share * len(scores) * 1000) // 1000) - 1)]

    assert abs(thresholds.warm - percentile(0.75)) <= 5
    assert abs(thresholds.hot - percentile(0.95)) <= 5
    # and so about 5 % of the scored contacts are hot, about 25 % warm or hot (rounding to tens moves a few)
    hot_share = sum(score >= thresholds.hot for score in scores) / len(scores)
    warm_or_hot_share = sum(score >= thresholds.warm for score in scores) / len(scores)
    assert 0.02 <= hot_share <= 0.08
    assert 0.18 <= warm_or_hot_share <= 0.32
    everyone = Contact.objects.count()
    assert Contact.objects.filter(score__gte=thresholds.hot).count() <= 0.08 * everyone
