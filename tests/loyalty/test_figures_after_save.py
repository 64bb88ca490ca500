"""Right after a save the programme page's figures are read before the recompute job has run: the
page says so, and reloads with current figures once the job is done."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.models import Job
from loyalty.tasks import program_recompute_task
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program
from tests.loyalty.test_pages import editor_data, tier_rows

pytestmark = pytest.mark.django_db


def test_page_says_its_figures_predate_the_running_recompute_and_reloads_when_it_ends(admin_client, marketer_client):
    for score in (2, 6, 8):
        give_tag(ContactFactory(), "PURCHASE", score)
    program = make_program()
    # when the admin saves new thresholds (the job is queued, not run yet)
    saved = admin_client.post(reverse("loyalty:program_edit", kwargs={"program_id": program.pk}),
                              editor_data(program, tier_rows(program, 8)))
    job = Job.objects.get(kind="loyalty_recompute")
    page = admin_client.get(saved["Location"])
    # then the page says its figures were read before the recompute finished
    assert 'data-testid="figures-stale"' in page.content.decode()
    poll = reverse("loyalty:program_job", kwargs={"program_id": program.pk, "job_id": job.pk})
    running = admin_client.get(poll, headers={"HX-Request": "true"})
    assert running.status_code == 200 and "HX-Refresh" not in running
    # when the worker finishes the job, the poll stops and asks the page to reload its figures
    program_recompute_task.run(job.pk)
    done = admin_client.get(poll, headers={"HX-Request": "true"})
    assert done.status_code == 286 and done["HX-Refresh"] == "true"
    # and the reloaded page shows the recomputed figures without the note
    reloaded = admin_client.get(saved["Location"])
    assert 'data-testid="figures-stale"' not in reloaded.content.decode()
    tiers = {tier.name: tier.members for tier in reloaded.context["tiers"]}
    assert tiers == {"Bronze": 2, "Silver": 1}
