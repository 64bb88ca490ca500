"""The rule action send_webhook: validated in the API and the editor, its effect written by the
rules engine's batch statement (rule.fired to that one webhook), its 30-day preview, the contact
timeline's "sent to webhook X", and webhook changes in the change history."""

from __future__ import annotations

import pytest
from django.urls import reverse
from standardwebhooks.webhooks import Webhook as StandardWebhook

from automation.models import Rule
from automation.services import rule_preview
from contacts.models import Contact
from core.outbox import OutboxMessage
from tests.automation.factories import event, make_rule, process_all
from tests.webhooks.conftest import make_webhook, pump_until, received
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db


def rule_body(webhook_id) -> dict:
    return {"name": "Jackets to the shop", "trigger": {"event_type": "product_view",
            "where": [{"property": "category", "op": "eq", "value": "kurtki"}]},
            "actions": [{"type": "add_tag", "tag": "KURTKI", "score": 1}, {"type": "send_webhook", "webhook_id": webhook_id}]}


def test_api_validates_the_webhook(admin_api, receiver):
    # given a webhook
    webhook = make_webhook(receiver.url_for("/hook"))
    # when a rule names an unknown webhook, a text, or the right one
    unknown = admin_api.post("/api/v1/rules", json=rule_body(999999))
    text = admin_api.post("/api/v1/rules", json=rule_body("shop"))
    ok = admin_api.post("/api/v1/rules", json=rule_body(webhook.pk))
    # then 400 naming actions.1.webhook_id twice, and 201 with the action as given
    for response in (unknown, text):
        assert response.status_code == 400
        assert [e["field"] for e in response.json()["errors"]] == ["actions.1.webhook_id"]
    assert ok.status_code == 201, ok.content
    assert ok.json()["actions"][1] == {"type": "send_webhook", "webhook_id": webhook.pk}
    assert f"send to webhook {webhook.name}" in ok.json()["summary"]


def test_firing_sends_rule_fired_to_that_webhook_only(ingest_api, receiver):
    # given a webhook subscribed to nothing about rules, another webhook, and a rule sending to the first
    receiver.expect_request("/shop").respond_with_data("ok")
    receiver.expect_request("/other").respond_with_data("ok")
    shop = make_webhook(receiver.url_for("/shop"), events=["consent.changed"])
    make_webhook(receiver.url_for("/other"), events=["consent.changed"])
    rule = make_rule("Jackets to the shop", where=[{"property": "category", "op": "eq", "value": "kurtki"}],
                     actions=[{"type": "send_webhook", "webhook_id": shop.pk}])
    # when three events arrive, two of which match, and the engine runs
    batch = [event("e1", email="ola@example.com", category="kurtki", price=199),
             event("e2", email="ola@example.com", category="buty"),
             event("e3", email="jan@example.com", category="kurtki")]
    assert ingest_api.post("/api/v1/events", json={"events": batch}).status_code == 202
    process_all()
    # then two rule.fired messages were written by the batch
    assert OutboxMessage.objects.filter(type="rule.fired").count() == 2
    # when the pump runs
    pump_until(lambda: Delivery.objects.filter(status="succeeded").count() == 2)
    # then only /shop got them, signed, with the rule, the contact and the event
    calls = received(receiver)
    assert {request.path for request, _ in calls} == {"/shop"}
    by_event = {}
    for request, body in calls:
        StandardWebhook(shop.secret).verify(request.get_data(as_text=True), dict(request.headers))
        by_event[body["data"]["event"]["event_id"]] = body
    assert set(by_event) == {"e1", "e3"}
    fired = by_event["e1"]
    assert fired["type"] == "rule.fired"
    assert fired["data"]["rule"] == {"id": rule.pk, "name": "Jackets to the shop"}
    assert fired["data"]["contact"]["email"] == "ola@example.com"
    assert fired["data"]["event"]["type"] == "product_view"
    assert fired["data"]["event"]["properties"] == {"category": "kurtki", "price": 199}
    assert "webhook_id" not in fired["data"] and "event_pk" not in fired["data"]


def test_a_rule_without_send_webhook_writes_no_rule_fired(ingest_api):
    # given a rule with tags only
    make_rule("Tags only", actions=[{"type": "add_tag", "tag": "{category}", "score": 1}])
    # when an event fires it
    ingest_api.post("/api/v1/events", json={"events": [event(category="kurtki")]})
    process_all()
    # then nothing for webhooks
    assert not OutboxMessage.objects.filter(type="rule.fired").exists()


def test_preview_counts_the_calls_of_the_last_30_days(receiver):
    # given 4 matching events in the last 30 days and 1 older
    from tests.factories import ContactFactory
    from tests.segments.factories import add_event

    webhook = make_webhook(receiver.url_for("/hook"))
    contact = ContactFactory()
    for days in (1, 2, 10, 29):
        add_event(contact, "product_view", days_ago=days, category="kurtki")
    add_event(contact, "product_view", days_ago=40, category="kurtki")
    # when the rule is previewed
    preview = rule_preview(event_type="product_view", conditions=[{"property": "category", "op": "eq", "value": "kurtki"}],
                           actions=[{"type": "send_webhook", "webhook_id": webhook.pk}])
    # then 4 calls
    assert preview["webhook_calls"] == 4


def test_editor_offers_the_action_and_saves_it(marketer_client, receiver):
    # given a webhook
    webhook = make_webhook(receiver.url_for("/hook"), description="Shop")
    # when the editor asks for a send_webhook row
    row = marketer_client.get(reverse("automation:rule_action_row"), {"index": 0, "type": "send_webhook", "replace": 1})
    # then it offers the webhooks by name
    assert row.status_code == 200 and f'<option value="{webhook.pk}"' in row.content.decode() and "Shop" in row.content.decode()
    # when a rule is saved with it
    response = marketer_client.post(reverse("automation:rule_new"), {
        "name": "To the shop", "event_type": "purchase", "active": "on",
        "act-0-type": "send_webhook", "act-0-target": str(webhook.pk),
    })
    # then the rule holds the action
    assert response.status_code in (200, 302)
    assert Rule.objects.get(name="To the shop").actions == [{"type": "send_webhook", "webhook_id": webhook.pk}]


def test_adhoc_runs_refuse_send_webhook(marketer_client, receiver):
    # given a webhook
    webhook = make_webhook(receiver.url_for("/hook"))
    # when an ad-hoc run is asked to send to it
    response = marketer_client.post(reverse("automation:adhoc"), {
        "target": "all", "act-0-type": "send_webhook", "act-0-target": str(webhook.pk),
    })
    # then it is refused with a reason on the row
    assert response.status_code == 200 and "needs an event" in response.content.decode()


def test_timeline_shows_sent_to_webhook(marketer_client, ingest_api, receiver):
    # given a rule sending to a webhook, fired and delivered
    receiver.expect_request("/hook").respond_with_data("ok")
    webhook = make_webhook(receiver.url_for("/hook"), description="Shop CRM")
    make_rule("To CRM", actions=[{"type": "send_webhook", "webhook_id": webhook.pk}])
    ingest_api.post("/api/v1/events", json={"events": [event(email="ewa@example.com", category="kurtki")]})
    process_all()
    pump_until(lambda: Delivery.objects.filter(status="succeeded").exists())
    contact = Contact.objects.get(email="ewa@example.com")
    # when the card's timeline is read
    text = marketer_client.get(reverse("contacts:card_timeline", args=[contact.pk])).content.decode()
    # then the event says it was sent to the webhook, by the rule
    assert "sent to webhook Shop CRM" in text and "To CRM" in text


def test_webhook_changes_are_in_the_change_history(admin_client, marketer_client, receiver):
    # given a webhook created, then switched off through the pages
    response = admin_client.post(reverse("webhooks:new"), {"url": receiver.url_for("/hook"), "description": "Audited",
                                                           "events": ["segment.entered"], "active": "on"})
    assert response.status_code == 200
    webhook_id = Webhook.objects.get().pk
    admin_client.post(reverse("webhooks:toggle", args=[webhook_id]))
    # when the change history is read, filtered to webhooks
    page = marketer_client.get(reverse("automation:changes"), {"kind": "webhook"}).content.decode()
    # then both changes are there with who made them, and no secret
    assert "Audited" in page and "Switched off" in page and "Created" in page
    assert "whsec_" not in page
