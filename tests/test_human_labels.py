"""Pages name event types and job kinds in words ("Product view", "Bulk action on contacts"),
never by their slugs (``product_view``, ``contacts_bulk``); the slugs stay in the API."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from automation.models import Rule
from contacts.models import EVENT_TYPE_CHOICES
from core.jobs import JOB_TASKS, job_kind_label
from core.models import Job

pytestmark = pytest.mark.django_db


def visible_text(html: str) -> str:
    """The page's text without tags and attribute values (a slug in a title= or value= is fine)."""
    return re.sub(r"<[^>]+>", " ", html)


def test_every_registered_job_kind_has_words():
    assert JOB_TASKS, "job tasks are registered at start-up"
    for kind in JOB_TASKS:
        label = job_kind_label(kind)
        assert label and "_" not in label and label != kind
    assert job_kind_label("contacts_bulk") == "Bulk action on contacts"
    assert job_kind_label("retired_kind") == "Retired kind"  # an old row of a kind no task registers


def test_jobs_pages_show_the_kind_in_words(marketer_client, marketer):
    job = Job.objects.create(kind="contacts_bulk", title="", params={}, created_by=marketer)
    listing = visible_text(marketer_client.get(reverse("jobs:list")).content.decode())
    detail = visible_text(marketer_client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode())
    for text in (listing, detail):
        assert "Bulk action on contacts" in text
        assert "contacts_bulk" not in text


def test_rule_list_and_editor_show_event_types_in_words(marketer_client):
    rule = Rule.objects.create(name="Viewed a jacket", event_type="product_view", actions=[])
    listing = marketer_client.get(reverse("automation:rules")).content.decode()
    badges = re.findall(r'<span class="badge badge-neutral"[^>]*>([^<]+)</span>', listing)
    assert "Product view" in badges and "product_view" not in badges
    editor = marketer_client.get(reverse("automation:rule_edit", kwargs={"rule_id": rule.pk})).content.decode()
    options = dict(re.findall(r'<option value="([a-z_]+)"[^>]*>([^<]+)</option>', editor))
    for slug, label in EVENT_TYPE_CHOICES:
        assert options.get(slug) == label
