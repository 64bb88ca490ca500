"""The tags page: counts and scores, rename, merge (scores add up), delete; all audited."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from contacts.models import ContactTag, Tag, TagEvent, TagScoreChange
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def test_tags_page_lists_counts_totals_and_averages(marketer_client):
    first, second = ContactFactory.create_batch(2)
    give_tag(first, "kurtki", 4)
    give_tag(second, "kurtki", 2)
    give_tag(second, "buty", 1)
    response = marketer_client.get(reverse("contacts:tags"))
    tags = {tag.name: (tag.contact_count, tag.total_score, tag.average_score) for tag in response.context["tags"]}
    assert tags == {"kurtki": (2, 6, 3), "buty": (1, 1, 1)}
    assert 'id="tag-score-distribution"' in response.content.decode()


def test_rename_keeps_contacts_and_refuses_a_taken_name(marketer_client, marketer):
    contact = ContactFactory()
    tag = give_tag(contact, "kurtki", 4).tag
    give_tag(contact, "buty", 1)
    marketer_client.post(reverse("contacts:tag_edit", args=[tag.pk]), {"name": "Kurtki zimowe", "colour": "#E11D48"})
    tag.refresh_from_db()
    assert (tag.name, tag.key, tag.colour) == ("Kurtki zimowe", "kurtki zimowe", "#e11d48")
    marketer_client.post(reverse("contacts:tag_edit", args=[tag.pk]), {"name": "BUTY"})
    tag.refresh_from_db()
    assert tag.name == "Kurtki zimowe"
    # the rename is in the audit trail with the user who made it
    event = TagEvent.objects.filter(pgh_obj_id=tag.pk, pgh_label="changed").first()
    assert event is not None and event.name == "Kurtki zimowe"
    assert event.pgh_context.metadata.get("user") == marketer.pk


def test_merge_adds_scores_and_moves_history(marketer_client):
    # given contacts with one, the other or both tags
    both, only_source, only_target = ContactFactory.create_batch(3)
    source = give_tag(both, "jackets", 2).tag
    target = give_tag(both, "kurtki", 3).tag
    give_tag(only_source, "jackets", 5)
    give_tag(only_target, "kurtki", 1)
    TagScoreChange.objects.create(contact=only_source, tag=source, delta=5, score_after=5, source="manual")
    # when jackets is merged into kurtki
    marketer_client.post(reverse("contacts:tag_merge", args=[source.pk]), {"into": "KURTKI "})
    # then scores added up, the source is gone, its history moved, and the merge was recorded
    assert not Tag.objects.filter(pk=source.pk).exists()
    assert dict(ContactTag.objects.values_list("contact_id", "score")) == {both.pk: 5, only_source.pk: 5,
                                                                            only_target.pk: 1}
    assert set(TagScoreChange.objects.values_list("tag_id", flat=True)) == {target.pk}
    assert TagScoreChange.objects.filter(source="merge").count() == 2
    assert TagEvent.objects.filter(pgh_obj_id=source.pk, pgh_label="merged").exists()


def test_merge_into_an_unknown_tag_or_itself_says_why_and_changes_nothing(marketer_client):
    contact = ContactFactory()
    source = give_tag(contact, "jackets", 2).tag
    # when the target does not exist, or is the tag itself
    unknown = marketer_client.post(reverse("contacts:tag_merge", args=[source.pk]), {"into": "kurtkii"}, follow=True)
    itself = marketer_client.post(reverse("contacts:tag_merge", args=[source.pk]), {"into": "Jackets"}, follow=True)
    # then each says why, and the tag is untouched
    assert "No tag is named “kurtkii”" in unknown.content.decode()
    assert "jackets cannot be merged into itself" in itself.content.decode()
    assert ContactTag.objects.get(contact=contact).tag == source and ContactTag.objects.get().score == 2


def test_page_weight_does_not_grow_with_tags_squared(marketer_client):
    # given 60 tags, each row with edit, merge and delete buttons
    contact = ContactFactory()
    for index in range(60):
        give_tag(contact, f"tag-{index}", 1)
    # when the page is shown, then it holds one shared dialog for the rows (besides every page's
    # confirmation dialog), no form per row and no list of every tag; a row's form is fetched when asked for
    page = marketer_client.get(reverse("contacts:tags")).content.decode()
    main = page[page.index('<main'):page.index('</main>')]  # the sidebar's language picker has options of its own
    assert page.count("<dialog") - page.count('<dialog class="modal" id="confirm-dialog"') == 1 and main.count("<option") == 0
    assert not re.search(r'action="/contacts/tags/\d+/', page) and page.count("/dialog/merge/") == 50  # a page of them
    merge = marketer_client.get(reverse("contacts:tag_dialog", args=[Tag.objects.get(name="tag-7").pk, "merge"]))
    assert "Merge tag-7 into…" in merge.content.decode() and 'list="merge-tag-options"' in merge.content.decode()
    assert marketer_client.get(f"/contacts/tags/{Tag.objects.get(name='tag-7').pk}/dialog/burn/").status_code == 404
    # and the merge target is typed, with suggestions fetched as you type
    suggestions = marketer_client.get(reverse("contacts:tag_autocomplete"), {"into": "tag-1"}).content.decode()
    assert '<option value="tag-1">' in suggestions and suggestions.count("<option") == 8


def test_tags_come_a_page_at_a_time_most_used_first(marketer_client):
    # given 55 tags on one contact and 3 more used by a second contact too
    first, second = ContactFactory.create_batch(2)
    for index in range(55):
        give_tag(first, f"rzadki-{index:02}", 1)
    for name in ("kurtki", "buty", "torebki"):
        give_tag(first, name, 2)
        give_tag(second, name, 1)
    # when the Tags page is opened, then it shows the first 50, the most used first, with a pager
    response = marketer_client.get(reverse("contacts:tags"))
    names = [tag.name for tag in response.context["tags"]]
    assert len(names) == 50 and names[:3] == ["buty", "kurtki", "torebki"]
    assert "Page <strong>1</strong> of <strong>2</strong>" in response.content.decode()
    # and the second page (as the pager's htmx link asks for it) holds the other 8
    second_page = marketer_client.get(reverse("contacts:tags"), {"page": 2}, headers={"HX-Request": "true"})
    assert [tag.name for tag in second_page.context["tags"]] == [f"rzadki-{index:02}" for index in range(47, 55)]
    assert "<html" not in second_page.content.decode()


def test_delete_removes_it_everywhere(marketer_client):
    contacts = ContactFactory.create_batch(3)
    for contact in contacts:
        tag = give_tag(contact, "old", 1).tag
    # the dialog says how many contacts lose it, and opens once it is in place
    response = marketer_client.get(reverse("contacts:tag_dialog", args=[tag.pk, "delete"]), headers={"HX-Request": "true"})
    assert "3 contacts will lose it" in response.content.decode() and "Delete from 3 contacts" in response.content.decode()
    assert json.loads(response["HX-Trigger-After-Swap"]) == {"openDialog": "tag-dialog"}
    marketer_client.post(reverse("contacts:tag_delete", args=[tag.pk]))
    assert not Tag.objects.exists() and not ContactTag.objects.exists()
    assert TagEvent.objects.filter(pgh_obj_id=tag.pk, pgh_label="deleted").exists()
