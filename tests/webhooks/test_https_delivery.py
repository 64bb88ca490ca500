"""Delivery over HTTPS: the call goes to the address the SSRF guard checked, while TLS is verified
against the URL's host name (sent as SNI) — a receiver whose certificate names another host is
refused, not trusted. A real TLS receiver on loopback with a certificate from a throwaway CA
(trustme) that the sender trusts through SSL_CERT_FILE, as an operator's private CA would be."""

from __future__ import annotations

import ssl

import pytest
import trustme
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook as StandardWebhook

from tests.webhooks.conftest import LOOPBACK, make_webhook, pump_until
from webhooks.models import Delivery
from webhooks.services import webhook_send_test

pytestmark = pytest.mark.django_db


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch, settings):
    """An HTTPS receiver on 127.0.0.1 whose certificate names ``localhost``; yields a function
    starting one with a certificate for the host name given."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    # "localhost" may also resolve to ::1: both loopbacks allowed, as an operator would list them
    settings.MH_WEBHOOK_ALLOWED_NETS = [LOOPBACK, "::1/128"]
    servers: list[HTTPServer] = []

    def start(certificate_host: str) -> HTTPServer:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(certificate_host).configure_cert(ssl_context)
        server = HTTPServer(host="127.0.0.1", port=0, ssl_context=ssl_context)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.clear()
        if server.is_running():
            server.stop()


def test_https_receiver_gets_a_verified_signed_call(tls_receiver):
    # given an HTTPS receiver whose certificate names localhost, and a webhook to https://localhost
    server = tls_receiver("localhost")
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    webhook = make_webhook(f"https://localhost:{server.port}/hook")
    # when a test message is sent
    webhook_send_test(webhook)
    delivery = pump_until(lambda: Delivery.objects.filter(status__in=("succeeded", "failed")).first())
    # then it arrived over TLS, signed, and the delivery succeeded
    assert delivery.status == "succeeded", delivery.last_error
    request, _ = server.log[0]
    StandardWebhook(webhook.secret).verify(request.get_data(as_text=True), dict(request.headers))
    assert request.host.startswith("localhost:")


def test_a_certificate_for_another_host_is_refused(tls_receiver, short_retries):
    # given an HTTPS receiver on the checked address whose certificate names another host
    server = tls_receiver("elsewhere.example")
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    webhook = make_webhook(f"https://localhost:{server.port}/hook")
    # when a test message is sent
    webhook_send_test(webhook)
    delivery = pump_until(lambda: Delivery.objects.filter(last_error__gt="").first())
    # then nothing reached the receiver's handler and the attempt failed on the certificate
    assert not server.log
    assert delivery.status != "succeeded"
    assert "certificate" in delivery.last_error.lower() or "hostname" in delivery.last_error.lower()
