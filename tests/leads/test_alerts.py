"""Hot-lead alerts in the app: who is notified when a lead becomes hot (score changes by the
engine and by hand, threshold changes), the bell, the list, marking read, and "new since your
last visit" on the hot-leads page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from core.roles import MARKETER, SALES
from leads.models import AlertSettings, HotLead, Notification, TemperatureSettings
from leads.notifications import hot_transitions_notify, notifications_unread_count
from leads.temperature import thresholds_save
from tests.automation.factories import event, make_rule, process_all
from tests.factories import ContactFactory, UserFactory
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db


def _recipients(contact) -> set[str]:
    return set(Notification.objects.filter(contact=contact).values_list("user__username", flat=True))


def test_a_lead_held_by_a_seller_alerts_only_that_seller():
    # given a contact at 90 points held by one seller, and another seller (hot from 100)
    owner = UserFactory(username="owner", role=SALES)
    UserFactory(username="colleague", role=SALES)
    contact = ContactFactory(owner=owner)
    give_points(contact, 90)
    # when it gains 15 points
    give_points(contact, 15)
    # then only the owner is told, with the score it reached
    assert _recipients(contact) == {"owner"}
    assert Notification.objects.get(contact=contact).score == 105
    assert HotLead.objects.filter(contact=contact).exists()


def test_an_unassigned_lead_alerts_every_active_seller_and_nobody_else():
    # given two active sellers, an inactive one and a marketer
    UserFactory(username="s1", role=SALES)
    UserFactory(username="s2", role=SALES)
    UserFactory(username="gone", role=SALES, is_active=False)
    UserFactory(username="m1", role=MARKETER)
    contact = ContactFactory()
    # when an unassigned contact becomes hot in one change
    give_points(contact, 120)
    # then every active seller is told
    assert _recipients(contact) == {"s1", "s2"}


def test_only_the_crossing_into_hot_alerts():
    # given a seller's lead that turns warm, then hot, then gains more
    owner = UserFactory(username="owner", role=SALES)
    contact = ContactFactory(owner=owner)
    give_points(contact, 60)
    assert Notification.objects.count() == 0
    give_points(contact, 50)
    give_points(contact, 50)
    # then one alert, for the crossing
    assert Notification.objects.filter(user=owner).count() == 1


def test_an_unread_alert_is_not_repeated_but_a_read_one_is():
    # given a seller's lead that became hot, cooled and heats up again while the alert is unread
    owner = UserFactory(username="owner", role=SALES)
    contact = ContactFactory(owner=owner)
    give_points(contact, 110)
    give_points(contact, -30)
    give_points(contact, 30)
    assert Notification.objects.filter(user=owner).count() == 1
    # when the seller reads it and the lead cools and heats up once more
    Notification.objects.filter(user=owner).update(read_at=timezone.now())
    give_points(contact, -30)
    give_points(contact, 30)
    # then there is a new, unread alert
    assert Notification.objects.filter(user=owner).count() == 2
    assert Notification.objects.filter(user=owner, read_at__isnull=True).count() == 1


def test_many_contacts_in_one_statement_are_alerted_set_based():
    # given 30 unassigned contacts and two sellers
    UserFactory(username="s1", role=SALES)
    UserFactory(username="s2", role=SALES)
    contacts = [ContactFactory() for _ in range(30)]
    # when one score_add call makes all of them hot
    from leads.scoring import score_add

    with connection.cursor() as cursor:
        score_add(cursor, contact_ids=[c.pk for c in contacts], deltas=[150] * 30)
    # then 2 × 30 alerts exist
    assert Notification.objects.count() == 60
    assert HotLead.objects.count() == 30


def test_a_lower_hot_threshold_alerts_the_contacts_it_makes_hot():
    # given contacts at 40, 70 and 120 (hot from 100), and a seller
    seller = UserFactory(username="s1", role=SALES)
    low, middle, high = ContactFactory(), ContactFactory(), ContactFactory()
    for contact, points in ((low, 40), (middle, 70), (high, 120)):
        give_points(contact, points)
    Notification.objects.all().delete()
    # when the admin lowers hot to 60
    thresholds_save(warm=30, hot=60)
    # then only the contact at 70 is newly hot and alerted
    assert list(Notification.objects.filter(user=seller).values_list("contact_id", flat=True)) == [middle.pk]


def test_the_rules_engine_alerts_when_an_event_makes_a_lead_hot(ingest_api):
    # given a rule worth 60 points per purchase and a seller's contact at 50 points
    seller = UserFactory(username="s1", role=SALES)
    make_rule(event_type="purchase", actions=[{"type": "add_score", "points": 60}])
    contact = ContactFactory(email="anna@example.com", owner=seller)
    give_points(contact, 50)
    # when a purchase arrives through the API and the engine runs
    response = ingest_api.post("/api/v1/events", json={"events": [event("p1", type="purchase")]})
    assert response.status_code == 202
    process_all()
    # then the seller has an alert at the new score
    notification = Notification.objects.get(user=seller)
    assert (notification.contact_id, notification.score) == (contact.pk, 110)


def test_hot_transitions_notify_takes_a_table_of_transitions():
    # given a temp table of transitions: one to hot, one to warm
    seller = UserFactory(username="s1", role=SALES)
    hot, warm = ContactFactory(owner=seller), ContactFactory(owner=seller)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE moved (contact_id bigint, from_temperature text, to_temperature text, score int)")
        cursor.execute("INSERT INTO moved VALUES (%s, 'warm', 'hot', 101), (%s, 'cold', 'warm', 55)", [hot.pk, warm.pk])
        # when
        written = hot_transitions_notify(cursor, "moved")
    # then
    assert written == 1
    assert list(Notification.objects.values_list("contact_id", "score")) == [(hot.pk, 101)]


def test_email_due_follows_the_user_setting_when_written():
    # given a seller who switched emails off
    seller = UserFactory(username="s1", role=SALES)
    AlertSettings.objects.create(user=seller, email_mode="off")
    # when a lead of theirs becomes hot
    give_points(ContactFactory(owner=seller), 100)
    # then the alert is in the app but owes no email
    assert list(Notification.objects.values_list("email_due", flat=True)) == [False]


# --- bell, list, read state ------------------------------------------------------------------------
def _alerts_for(user, count: int) -> list:
    contacts = [ContactFactory(owner=user) for _ in range(count)]
    for contact in contacts:
        give_points(contact, 100)
    return list(Notification.objects.filter(user=user).order_by("id"))


def test_the_bell_counts_unread_alerts(sales, sales_client):
    # given three alerts for the seller
    alerts = _alerts_for(sales, 3)
    # when the bell is fetched
    response = sales_client.get(reverse("leads:notification_bell"))
    # then it shows 3
    assert response.status_code == 200
    assert 'data-unread="3"' in response.content.decode()
    # when one is marked read (htmx), the bell is told to refresh and then shows 2
    read = sales_client.post(reverse("leads:notification_read", args=[alerts[0].pk]), headers={"HX-Request": "true"})
    assert read["HX-Trigger"] == "notifications-changed"
    assert 'data-unread="2"' in sales_client.get(reverse("leads:notification_bell")).content.decode()


def test_the_bell_is_empty_without_unread_alerts(sales_client):
    response = sales_client.get(reverse("leads:notification_bell"))
    assert "data-unread" not in response.content.decode()
    assert "No unread notifications" in response.content.decode()


def test_the_bell_is_on_every_page_for_staff(sales_client):
    response = sales_client.get(reverse("dashboard"))
    assert f'hx-get="{reverse("leads:notification_bell")}"' in response.content.decode()


def test_a_seller_sees_and_marks_only_their_own_notifications(sales, sales_client):
    # given alerts for the seller and for a colleague
    mine = _alerts_for(sales, 2)
    colleague = UserFactory(username="colleague", role=SALES)
    theirs = _alerts_for(colleague, 1)
    # when the seller lists notifications
    response = sales_client.get(reverse("leads:notifications"))
    # then only theirs are listed
    listed = [n.pk for n in response.context["notifications"]]
    assert listed == [mine[1].pk, mine[0].pk]
    # and they cannot mark the colleague's read
    denied = sales_client.post(reverse("leads:notification_read", args=[theirs[0].pk]))
    assert denied.status_code == 404
    assert Notification.objects.get(pk=theirs[0].pk).read_at is None
    # and "mark all read" touches only their own
    sales_client.post(reverse("leads:notifications_read_all"))
    assert notifications_unread_count(sales) == 0
    assert notifications_unread_count(colleague) == 1


def test_the_list_is_paginated_and_filters_unread(sales, sales_client):
    # given 30 alerts, 2 of them read
    alerts = _alerts_for(sales, 30)
    Notification.objects.filter(pk__in=[alerts[0].pk, alerts[1].pk]).update(read_at=timezone.now())
    # when
    first = sales_client.get(reverse("leads:notifications"))
    unread = sales_client.get(reverse("leads:notifications"), {"show": "unread", "page": 2})
    # then 25 a page, newest first; the unread view has 28 rows over two pages
    assert len(first.context["notifications"]) == 25
    assert first.context["notifications"][0].pk == alerts[-1].pk
    assert unread.context["page_obj"].paginator.count == 28
    assert len(unread.context["notifications"]) == 3


def test_reading_an_alert_cancels_its_email(sales, sales_client):
    # given an alert still owed an email
    alert = _alerts_for(sales, 1)[0]
    assert alert.email_due
    # when the seller reads it in the app first
    sales_client.post(reverse("leads:notification_read", args=[alert.pk]))
    # then it is no longer emailed
    alert.refresh_from_db()
    assert alert.read_at is not None and not alert.email_due


def test_alert_settings_are_saved_per_user(sales, sales_client):
    # when the seller chooses a digest every 4 hours
    response = sales_client.post(reverse("leads:alert_settings"), {"email_mode": "digest", "digest_minutes": "240"})
    # then
    assert response.status_code == 302
    stored = AlertSettings.objects.get(user=sales)
    assert (stored.email_mode, stored.digest_minutes) == ("digest", 240)


def test_alert_settings_reject_bad_values(sales_client):
    response = sales_client.post(reverse("leads:alert_settings"), {"email_mode": "fax", "digest_minutes": "7"})
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"email_mode", "digest_minutes"}
    assert not AlertSettings.objects.exists()


# --- "new since your last visit" ------------------------------------------------------------------
def test_hot_page_marks_leads_that_became_hot_since_the_last_visit(sales, sales_client):
    # given a lead hot before the seller's last visit (an hour ago) and one that became hot after
    TemperatureSettings.current()
    old = ContactFactory(owner=sales)
    give_points(old, 150)
    HotLead.objects.filter(contact=old).update(became_hot_at=timezone.now() - timedelta(hours=2))
    AlertSettings.objects.create(user=sales, hot_visit_at=timezone.now() - timedelta(hours=1))
    fresh = ContactFactory(owner=sales)
    give_points(fresh, 120)
    # when the seller opens the hot-leads page
    response = sales_client.get(reverse("leads:hot"))
    # then only the fresh lead is new, and the header counts it
    marks = {lead.pk: getattr(lead, "is_new", False) for lead in response.context["leads"]}
    assert marks == {old.pk: False, fresh.pk: True}
    assert response.context["new_count"] == 1
    assert "1 new since your last visit" in response.content.decode()
    # when they filter (an htmx fragment) or reload within the same visit, the mark stays
    again = sales_client.get(reverse("leads:hot"), {"sort": "growth"}, headers={"HX-Request": "true"})
    assert again.context["new_count"] == 1
    assert sales_client.get(reverse("leads:hot")).context["new_count"] == 1
    # when they mark all as seen, nothing is new
    sales_client.post(reverse("leads:hot_seen"))
    assert sales_client.get(reverse("leads:hot")).context["new_count"] == 0


def test_a_first_visit_marks_nothing_new(sales, sales_client):
    give_points(ContactFactory(owner=sales), 150)
    response = sales_client.get(reverse("leads:hot"))
    assert response.context["new_count"] == 0
    assert AlertSettings.objects.get(user=sales).hot_visit_at is not None


def test_a_lead_held_by_a_deactivated_user_goes_to_the_sales_team():
    # given a lead held by someone who left, and an active seller
    gone = UserFactory(username="gone", role=SALES, is_active=False)
    UserFactory(username="s1", role=SALES)
    contact = ContactFactory(owner=gone)
    # when it becomes hot
    give_points(contact, 100)
    # then the team hears about it instead
    assert _recipients(contact) == {"s1"}


def test_the_thresholds_page_alerts_the_contacts_it_makes_hot(admin_client):
    # given a seller's lead at 80 points (hot from 100)
    seller = UserFactory(username="s1", role=SALES)
    contact = ContactFactory(owner=seller)
    give_points(contact, 80)
    # when the admin saves hot = 75 on the settings page
    response = admin_client.post(reverse("leads:settings"), {
        "warm": 40, "hot": 75, "decay_half_life_days": 90,
    })
    # then the seller is told
    assert response.status_code == 302
    assert _recipients(contact) == {"s1"}


def test_a_repair_that_makes_a_lead_hot_alerts_too():
    # given a seller's lead whose maintained score drifted below its ledger (120 points)
    seller = UserFactory(username="s1", role=SALES)
    contact = ContactFactory(owner=seller)
    give_points(contact, 120)
    Notification.objects.all().delete()
    from contacts.models import Contact
    from leads.scoring import score_recompute_all

    Contact.objects.filter(pk=contact.pk).update(score=10)
    # when the scores are recomputed from the ledger
    with connection.cursor() as cursor:
        corrected = score_recompute_all(cursor)
    # then the lead is hot again and its owner is told
    assert corrected == 1
    assert _recipients(contact) == {"s1"}
