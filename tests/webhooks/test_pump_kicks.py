"""Every writer of outbox messages starts the webhook pump right after its commit, not at beat's
next sweep: memberships, threshold changes, tier recomputes and erasures send no
``contacts_changed``, so they tell the outbox's own signal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from unittest import mock

import pytest

from contacts.models import ContactTag
from contacts.services import contact_erase
from core.outbox import OutboxMessage
from leads.models import TemperatureSettings
from leads.temperature import thresholds_save
from loyalty.services import program_recompute
from segments.services import segment_members_refresh_for_contacts, segment_refresh
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import give_points
from tests.loyalty.factories import make_program
from tests.segments.factories import make_segment
from webhooks import hooks

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}


@pytest.fixture
def kicks(django_capture_on_commit_callbacks) -> Iterator[Callable[[Callable[[], object]], int]]:
    """Run a change in a transaction of its own, its commit callbacks run; how many pumps it
    enqueued (the per-process interval between kicks reset before each change)."""
    def run(change: Callable[[], object]) -> int:
        hooks._kick_at = float("-inf")
        with mock.patch.object(hooks, "webhooks_pump_task") as task, \
                django_capture_on_commit_callbacks(execute=True):
            change()
        return task.delay.call_count + task.apply_async.call_count

    yield run


def test_full_segment_refresh_kicks_the_pump_when_members_move(kicks):
    # given a contact in a segment's definition
    contact = ContactFactory()
    give_tag(contact, "kurtki", 5)
    segment = make_segment(KURTKI_3)
    # when the first refresh makes it a member: one message, one kick
    assert kicks(lambda: segment_refresh(segment.pk)) == 1
    assert OutboxMessage.objects.filter(type="segment.entered").count() == 1
    # when a refresh moves nobody: no kick
    assert kicks(lambda: segment_refresh(segment.pk)) == 0


def test_incremental_membership_refresh_kicks_the_pump(kicks):
    # given a materialised segment and a contact that then leaves it
    contact = ContactFactory()
    give_tag(contact, "kurtki", 5)
    segment = make_segment(KURTKI_3)
    segment_refresh(segment.pk)
    ContactTag.objects.filter(contact=contact).delete()
    # when the incremental refresh re-evaluates the contact: the exit is told and the pump kicked
    assert kicks(lambda: segment_members_refresh_for_contacts([contact.pk])) == 1
    assert OutboxMessage.objects.filter(type="segment.exited", contact_id=contact.pk).exists()
    # and re-evaluating it again moves nothing and kicks nothing
    assert kicks(lambda: segment_members_refresh_for_contacts([contact.pk])) == 0


def test_threshold_change_kicks_the_pump(kicks):
    # given a contact at 60 points under warm 50 / hot 100
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    give_points(ContactFactory(), 60)
    # when the hot threshold drops below it: one kick; a change that moves nobody: none
    assert kicks(lambda: thresholds_save(warm=30, hot=55)) == 1
    assert kicks(lambda: thresholds_save(warm=30, hot=58)) == 0


def test_tier_recompute_kicks_the_pump(kicks):
    # given a programme whose contact has its tier
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 7)
    program = make_program()
    assert OutboxMessage.objects.filter(type="loyalty.tier_changed").count() == 1
    # when the contact's metric drops and the programme is recomputed: one kick
    ContactTag.objects.filter(contact=contact).delete()
    assert kicks(lambda: program_recompute(program)) == 1
    assert OutboxMessage.objects.filter(type="loyalty.tier_changed").count() == 2


def test_erasure_kicks_the_pump(kicks):
    contact = ContactFactory()
    assert kicks(lambda: contact_erase(contact)) == 1
    assert OutboxMessage.objects.filter(type="contact.erased").count() == 1
