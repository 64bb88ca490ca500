"""Hot-lead alert emails against a real SMTP server on loopback (aiosmtpd): one email per lead to
its owner, every seller for an unassigned lead, a digest, the unsubscribe link, exactly-once
claiming, and a failed SMTP hand-over retried later."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.utils import timezone

from core.roles import MARKETER, SALES
from leads.models import AlertSettings, Notification
from leads.notifications import CLAIM_LEASE, INSTANT_FLOOD_LIMIT, alerts_email_send
from tests.factories import ContactFactory, UserFactory
from tests.leads.factories import give_points
from tests.leads.smtp_server import Inbox, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(settings):
    """A real SMTP server on 127.0.0.1; Django's SMTP backend pointed at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.MH_SITE_URL = "https://hub.example.com"
    try:
        yield inbox
    finally:
        controller.stop()


def test_one_lead_one_email_to_its_owner(smtp):
    # given a seller holding a lead, and a colleague
    owner = UserFactory(username="owner", first_name="Ola", role=SALES)
    UserFactory(username="colleague", role=SALES)
    lead = ContactFactory(email="jan@example.com", first_name="Jan", last_name="Kowalski", owner=owner)
    # when the lead becomes hot and the sweep runs (twice: a repeat sends nothing more)
    give_points(lead, 130)
    sent = alerts_email_send()
    again = alerts_email_send()
    # then exactly one email went to the owner, naming the lead and linking its card
    assert (sent, again) == (1, 0)
    assert smtp.recipients == [["owner@example.com"]]
    message = smtp.messages[0]
    assert message["Subject"] == "Hot lead: Jan Kowalski (score 130)"
    body = smtp.text(0)
    assert f"https://hub.example.com/contacts/{lead.pk}/" in body
    assert "You hold this lead." in body
    assert message["List-Unsubscribe"].strip().startswith("<https://hub.example.com/leads/alerts/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_body(preferencelist=("html",)) is not None
    assert Notification.objects.get().email_sent_at is not None


def test_an_unassigned_lead_emails_every_seller(smtp):
    # given two sellers, a marketer and a seller without an address
    UserFactory(username="s1", role=SALES)
    UserFactory(username="s2", role=SALES)
    UserFactory(username="m1", role=MARKETER)
    UserFactory(username="noaddress", email="", role=SALES)
    # when an unassigned lead becomes hot
    give_points(ContactFactory(email="anon@example.com"), 100)
    alerts_email_send()
    # then each seller with an address got one email, telling them to claim it
    assert sorted(r[0] for r in smtp.recipients) == ["s1@example.com", "s2@example.com"]
    assert "unassigned" in smtp.text(0)
    assert Notification.objects.get(user__username="noaddress").email_due is False


def test_digest_mode_sends_one_email_listing_several_leads(smtp):
    # given a seller who wants a digest at most every 15 minutes, and three of their leads turning hot
    seller = UserFactory(username="s1", role=SALES)
    AlertSettings.objects.create(user=seller, email_mode="digest", digest_minutes=15)
    leads = [ContactFactory(owner=seller, first_name=name, last_name="Test") for name in ("Ala", "Bartek", "Celina")]
    for lead in leads:
        give_points(lead, 100)
    # when the sweep runs at once, nothing is due yet
    assert alerts_email_send() == 0
    # when it runs 16 minutes later
    sent = alerts_email_send(now=timezone.now() + timedelta(minutes=16))
    # then one email lists all three
    assert sent == 1
    assert smtp.recipients == [["s1@example.com"]]
    assert smtp.messages[0]["Subject"] == "3 leads became hot"
    body = smtp.text(0)
    for lead in leads:
        assert f"{lead.first_name} Test <{lead.email}>" in body
    assert not Notification.objects.filter(email_sent_at__isnull=True).exists()
    assert AlertSettings.objects.get(user=seller).last_digest_at is not None


def test_many_instant_alerts_at_once_become_one_summary(smtp):
    # given a seller and more of their leads turning hot at once than the flood limit
    seller = UserFactory(username="s1", role=SALES)
    count = INSTANT_FLOOD_LIMIT + 2
    for _ in range(count):
        give_points(ContactFactory(owner=seller), 100)
    # when the sweep runs
    alerts_email_send()
    # then one summary email, not a flood
    assert len(smtp.messages) == 1
    assert smtp.messages[0]["Subject"] == f"{count} leads became hot"


def test_the_unsubscribe_link_switches_emails_off_without_signing_in(smtp):
    # given a seller who got an alert email
    seller = UserFactory(username="s1", role=SALES)
    give_points(ContactFactory(owner=seller), 100)
    alerts_email_send()
    link = re.search(r"Stop these emails: (\S+)", smtp.text(0)).group(1)
    path = link.removeprefix("https://hub.example.com")
    anonymous = Client()
    # when they open the link (not signed in), they are asked; a GET changes nothing
    page = anonymous.get(path)
    assert page.status_code == 200
    assert "Unsubscribe from hot-lead emails" in page.content.decode()
    assert AlertSettings.objects.filter(user=seller, email_mode="off").count() == 0
    # when they confirm
    done = anonymous.post(path)
    # then emails are off: the next hot lead shows on the bell but is not emailed
    assert done.status_code == 200
    assert AlertSettings.objects.get(user=seller).email_mode == "off"
    give_points(ContactFactory(owner=seller), 100)
    assert alerts_email_send() == 0
    assert len(smtp.messages) == 1
    assert Notification.objects.filter(user=seller, read_at__isnull=True).count() == 2


def test_a_tampered_unsubscribe_link_is_refused(smtp):
    seller = UserFactory(username="s1", role=SALES)
    give_points(ContactFactory(owner=seller), 100)
    alerts_email_send()
    path = re.search(r"Stop these emails: (\S+)", smtp.text(0)).group(1).removeprefix("https://hub.example.com")
    forged = path.replace("/unsubscribe/", "/unsubscribe/x")
    response = Client().post(forged)
    assert response.status_code == 400
    assert not AlertSettings.objects.filter(user=seller, email_mode="off").exists()


def test_a_row_claimed_by_a_live_worker_is_not_sent_twice_and_a_dead_claim_expires(smtp):
    # given an alert that another worker claimed a minute ago (still sending)
    seller = UserFactory(username="s1", role=SALES)
    give_points(ContactFactory(owner=seller), 100)
    now = timezone.now()
    Notification.objects.update(email_claimed_at=now - timedelta(minutes=1))
    # when this worker sweeps, it leaves the row alone
    assert alerts_email_send(now=now) == 0
    # when the claim is older than the lease (that worker died), the row is sent, once
    later = now + CLAIM_LEASE
    assert alerts_email_send(now=later) == 1
    assert alerts_email_send(now=later) == 0
    assert len(smtp.messages) == 1


def test_a_refused_smtp_hand_over_is_retried_by_the_next_sweep(smtp, settings):
    # given the mail server is unreachable
    seller = UserFactory(username="s1", role=SALES)
    give_points(ContactFactory(owner=seller), 100)
    working_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = free_port()
    # when the sweep runs, nothing is sent and nothing is marked sent
    with pytest.raises(OSError):
        alerts_email_send()
    stored = Notification.objects.get()
    assert (stored.email_sent_at, stored.email_claimed_at) == (None, None)
    # when the server is back
    settings.EMAIL_PORT = working_port
    # then the next sweep sends it (the claim was given back)
    sent = alerts_email_send()
    assert sent == 1
    assert len(smtp.messages) == 1
