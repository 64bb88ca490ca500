"""Funnel pages: create, edit (reorder, rename-by-name, refuse removing a held stage), report, bulk move."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from core.models import Job
from leads.funnels import stages_set
from leads.models import ContactStage, Funnel, StageTransition
from leads.tasks import funnel_bulk_move
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages

pytestmark = pytest.mark.django_db


def test_marketer_creates_a_funnel(marketer_client):
    response = marketer_client.post(reverse("leads:funnels"), {"name": "Webinar", "stages": "Registered\n\nAttended\nBought\n"})
    funnel = Funnel.objects.get(name="Webinar")
    assert response.status_code == 302
    assert list(funnel.stages.values_list("name", flat=True)) == ["Registered", "Attended", "Bought"]


def test_invalid_funnel_form_names_the_field(marketer_client):
    funnel_with_stages("Sales")
    response = marketer_client.post(reverse("leads:funnels"), {"name": "sales", "stages": "A\na"})
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"name", "stages"}


def test_sales_sees_funnels_but_cannot_create(sales_client):
    assert sales_client.get(reverse("leads:funnels")).status_code == 200
    assert sales_client.post(reverse("leads:funnels"), {"name": "X", "stages": "A"}).status_code == 403
    assert not Funnel.objects.exists()


def test_edit_reorders_and_refuses_to_drop_a_held_stage(marketer_client):
    funnel = funnel_with_stages("Sales", ("New", "Engaged", "Won"))
    contact = ContactFactory()
    with connection.cursor() as cursor:
        stages_set(cursor, contact_ids=[contact.pk], funnel_names=["Sales"], stage_names=["Engaged"])
    url = reverse("leads:funnel_edit", args=[funnel.pk])
    refused = marketer_client.post(url, {"name": "Sales", "stages": "New\nWon"})
    assert "still hold contacts" in str(refused.context["form"].errors["stages"])
    marketer_client.post(url, {"name": "Sales pipeline", "stages": "Won\nengaged\nNew\nLost"})
    funnel.refresh_from_db()
    assert funnel.name == "Sales pipeline"
    assert list(funnel.stages.values_list("name", flat=True)) == ["Won", "engaged", "New", "Lost"]
    assert ContactStage.objects.get(contact=contact).stage.name == "engaged"


def test_report_page_renders_the_funnel_chart(sales_client):
    funnel = funnel_with_stages("Sales")
    contacts = [ContactFactory() for _ in range(3)]
    with connection.cursor() as cursor:
        stages_set(cursor, contact_ids=[c.pk for c in contacts], funnel_names=["Sales"] * 3, stage_names=["New"] * 3)
        stages_set(cursor, contact_ids=[contacts[0].pk], funnel_names=["Sales"], stage_names=["MQL"])
        stages_set(cursor, contact_ids=[contacts[0].pk], funnel_names=["Sales"], stage_names=["Engaged"])
    response = sales_client.get(reverse("leads:funnel_detail", args=[funnel.pk]), {"range": "30"})
    assert response.status_code == 200
    assert [row["entered"] for row in response.context["stages"]][:3] == [3, 1, 1]
    assert response.context["figure"]["data"][0]["type"] == "funnel"
    assert any(move.backwards for move in response.context["recent"])
    bad = sales_client.get(reverse("leads:funnel_detail", args=[funnel.pk]), {"start": "2025-02-10", "end": "2025-01-01"})
    assert bad.status_code == 200 and "before the start" in bad.context["error"]


def test_bulk_move_job_moves_the_selection(marketer):
    funnel_with_stages("Sales")
    contacts = [ContactFactory() for _ in range(7)]
    from leads.models import Stage

    stage = Stage.objects.get(funnel__name="Sales", name="SQL")
    job = Job.objects.create(kind="funnel_bulk_move", created_by=marketer,
                             params={"stage_id": stage.pk, "ids": ",".join(str(c.pk) for c in contacts[:5]), "query": ""})
    # the task body, called directly (the worker's wrapper is tested by the jobs module)
    from core.jobs import Progress

    result = funnel_bulk_move(job, Progress(job))
    assert result["moved"] == 5
    assert ContactStage.objects.filter(stage=stage).count() == 5
    assert set(StageTransition.objects.values_list("cause", flat=True)) == {"bulk"}
    job.refresh_from_db()
    assert job.processed == 5


def test_bulk_move_by_contact_list_filter(marketer):
    from core.jobs import Progress
    from leads.models import Stage

    funnel_with_stages("Sales")
    stage = Stage.objects.get(funnel__name="Sales", name="New")
    berlin = [ContactFactory(country="DE") for _ in range(3)]
    ContactFactory(country="PL")
    job = Job.objects.create(kind="funnel_bulk_move", params={"stage_id": stage.pk, "ids": "", "query": "country=DE"})
    result = funnel_bulk_move(job, Progress(job))
    assert result["moved"] == 3
    assert set(ContactStage.objects.values_list("contact_id", flat=True)) == {c.pk for c in berlin}


def test_bulk_move_view_starts_a_job(marketer_client, django_capture_on_commit_callbacks):
    funnel = funnel_with_stages("Sales")
    contacts = [ContactFactory() for _ in range(2)]
    stage = funnel.stages.first()
    url = reverse("leads:funnel_bulk_move") + "?" + "&".join(f"ids={c.pk}" for c in contacts)
    assert marketer_client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=False):
        response = marketer_client.post(reverse("leads:funnel_bulk_move"), {"stage": stage.pk, "ids": ",".join(str(c.pk) for c in contacts)})
    job = Job.objects.get(kind="funnel_bulk_move")
    assert response.status_code == 302
    assert job.params["ids"] == ",".join(str(c.pk) for c in contacts)
    empty = marketer_client.post(reverse("leads:funnel_bulk_move"), {"stage": stage.pk})
    assert empty.status_code == 200 and "No contacts chosen" in empty.content.decode()
