"""Moving contacts through funnels: one writer, every real move logged with its cause."""

from __future__ import annotations

import pytest
from django.db import connection

from leads.funnels import stages_set
from leads.models import ContactStage, StageTransition
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages

pytestmark = pytest.mark.django_db


def _set(contact_ids, funnel, stage, **kwargs):
    with connection.cursor() as cursor:
        return stages_set(
            cursor,
            contact_ids=contact_ids,
            funnel_names=[funnel] * len(contact_ids),
            stage_names=[stage] * len(contact_ids),
            **kwargs,
        )


def test_first_entry_forward_and_backward_moves_are_logged():
    # given a funnel and a contact
    funnel = funnel_with_stages("Sales")
    contact = ContactFactory()
    # when it enters, moves forward, then back
    assert _set([contact.pk], "sales", "new") == [contact.pk]
    assert _set([contact.pk], "SALES", " MQL ", cause="api") == [contact.pk]
    assert _set([contact.pk], "Sales", "Engaged", cause="manual") == [contact.pk]
    # then the current stage is the last one and every move is recorded in order
    current = ContactStage.objects.get(contact=contact, funnel=funnel)
    assert current.stage.name == "Engaged"
    moves = list(
        StageTransition.objects.filter(contact=contact).order_by("id").values_list("from_stage__name", "to_stage__name", "cause")
    )
    assert moves == [(None, "New", "rule"), ("New", "MQL", "api"), ("MQL", "Engaged", "manual")]


def test_setting_the_current_stage_is_not_a_move():
    funnel_with_stages("Sales")
    contact = ContactFactory()
    _set([contact.pk], "Sales", "New")
    assert _set([contact.pk], "Sales", "new") == []
    assert StageTransition.objects.filter(contact=contact).count() == 1


def test_unknown_funnel_or_stage_is_skipped(caplog):
    funnel_with_stages("Sales")
    contact = ContactFactory()
    with connection.cursor() as cursor:
        moved = stages_set(
            cursor,
            contact_ids=[contact.pk, contact.pk],
            funnel_names=["Nope", "Sales"],
            stage_names=["New", "Missing"],
        )
    assert moved == []
    assert not ContactStage.objects.exists()
    assert "Nope" in caplog.text and "Missing" in caplog.text


def test_last_request_per_contact_wins_within_a_batch():
    funnel_with_stages("Sales")
    a, b = ContactFactory(), ContactFactory()
    with connection.cursor() as cursor:
        moved = stages_set(
            cursor,
            contact_ids=[a.pk, b.pk, a.pk],
            funnel_names=["Sales"] * 3,
            stage_names=["New", "SQL", "MQL"],
            rule_ids=[None, None, None],
            event_pks=[11, 12, 13],
        )
    assert moved == sorted([a.pk, b.pk])
    assert ContactStage.objects.get(contact=a).stage.name == "MQL"
    assert StageTransition.objects.get(contact=a).event_pk == 13
