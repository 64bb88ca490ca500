"""Settings → Webhooks in Polish: the pages, the form's errors and what the worker stored are shown in
the reader's language; the API's messages stay the contract's English."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from tests.webhooks.conftest import make_webhook
from webhooks.models import Delivery, Webhook

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


def test_the_pages_speak_polish_with_stored_reasons_translated(admin_client, receiver):
    # given a webhook the system switched off, with a delivery its worker ended in English
    webhook = make_webhook(receiver.url_for("/hook"), description="Sklep")
    Webhook.objects.filter(pk=webhook.pk).update(active=False, disabled_reason="The receiver answered 410 Gone",
                                                 disabled_at=timezone.now())
    Delivery.objects.create(webhook=webhook, message_id="msg_1", type="segment.entered", body="{}",
                            status=Delivery.Status.FAILED, last_error="The webhook was switched off")
    # when the admin opens the list and the webhook in Polish
    listing = admin_client.get(reverse("webhooks:list"), **POLISH).content.decode()
    detail = admin_client.get(reverse("webhooks:detail", args=[webhook.pk]), **POLISH).content.decode()
    # then the words and the stored reasons are Polish
    assert "został wyłączony przez system" in listing and "Odbiorca odpowiedział 410 Gone" in listing
    assert "Dziennik wywołań" in detail and "Webhook został wyłączony" in detail
    assert "The receiver answered" not in listing + detail and "Delivery log" not in detail


def test_the_form_explains_a_refused_url_in_polish_and_the_api_in_english(admin_client, admin_api):
    # when the URL is not http(s), in the form (Polish) and through the API (asked for Polish too)
    form = admin_client.post(reverse("webhooks:new"), {"url": "ftp://example.com", "events": ["segment.entered"]},
                             **POLISH).content.decode()
    api = admin_api.post("/api/v1/webhooks", json={"url": "ftp://example.com", "events": ["segment.entered"]},
                         headers={"Accept-Language": "pl"})
    # then the form says it in Polish; the API answers in its contract's English
    assert "Adres musi zaczynać się od http:// lub https://." in form
    assert api.status_code == 400 and "must start with http:// or https://" in api.content.decode()


def test_flash_messages_are_polish(admin_client, receiver):
    # given a webhook
    webhook = make_webhook(receiver.url_for("/hook"), description="Sklep")
    # when the admin switches it off in Polish
    response = admin_client.post(reverse("webhooks:toggle", args=[webhook.pk]), follow=True, **POLISH)
    # then the message is Polish
    assert "Wyłączono webhook „Sklep”." in response.content.decode()


def test_a_refused_url_the_worker_stored_reads_in_polish(settings):
    # given the worker's English error for a URL that resolves to a private address (the guard's own words)
    from django.utils import translation

    from webhooks.models import stored_text
    from webhooks.ssrf import UnsafeUrl, check_url

    settings.MH_WEBHOOK_ALLOWED_NETS = []
    with translation.override("en"):
        try:
            check_url("http://127.0.0.1/hook")
        except UnsafeUrl as exc:
            stored = f"Refused: the URL {exc}"
    # when a Polish page shows it
    with translation.override("pl"):
        shown = stored_text(stored)
    # then it is Polish, the address kept
    assert shown == ("Odrzucono adres URL: host wskazuje na 127.0.0.1 — adres pętli zwrotnej, prywatny lub lokalny "
                     "dla łącza (można go dopuścić w MH_WEBHOOK_ALLOWED_NETS)")
