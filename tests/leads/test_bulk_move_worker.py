"""A bulk funnel move runs in a real Celery worker and reports progress on its Job."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.models import Job
from leads.models import ContactStage, StageTransition
from tests.conftest import wait_for
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_bulk_move_job_runs_in_the_worker(celery_worker_process, marketer_client):
    # given a funnel and contacts selected on the contact list
    funnel = funnel_with_stages("Sales")
    stage = funnel.stages.get(name="MQL")
    contacts = [ContactFactory() for _ in range(12)]
    # when a marketer starts the move from the bulk page (htmx: the progress fragment comes back)
    response = marketer_client.post(
        reverse("leads:funnel_bulk_move"),
        {"stage": stage.pk, "ids": ",".join(str(c.pk) for c in contacts)},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    job = Job.objects.get(kind="funnel_bulk_move")
    assert f"/jobs/{job.pk}/progress/" in response.content.decode()
    # then the worker finishes it: every contact is in the stage, each move logged as bulk
    wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=60, message="the bulk move job")
    job.refresh_from_db()
    assert job.status == Job.Status.DONE, job.error
    assert job.result["moved"] == 12 and job.progress == 1.0
    assert ContactStage.objects.filter(stage=stage).count() == 12
    assert StageTransition.objects.filter(cause="bulk").count() == 12
