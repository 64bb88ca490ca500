"""The vendored analytics.js in a real browser: a shop page with the one-tag snippet of a browser
source sends a page view and tracks to this server; a page on an origin the source does not
allow is refused by CORS."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from playwright.sync_api import Page

from contacts.models import Contact, Event
from tests.conftest import wait_for
from tracking.models import HeldMessage, MessageLog
from tracking.services import source_issue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class _ShopServer:
    """The shop's website: a static page on an origin of its own (its own port on 127.0.0.1;
    the app runs on localhost). A real server, so Chromium treats both as the loopback space."""

    def __init__(self) -> None:
        self.html = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = server.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def shop():
    server = _ShopServer()
    yield server
    server.stop()


@pytest.fixture
def elsewhere():
    server = _ShopServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def _shop_page(live_url: str, write_key: str) -> str:
    return f"""<!doctype html><html><head><title>Shop</title>
<script src="{live_url}/v1/snippet/{write_key}.js"></script>
</head><body><h1>Kurtki</h1>
<button id="view" onclick="analytics.track('Product Viewed', {{category: 'kurtki', name: 'Parka', price: 399}})">View</button>
<button id="login" onclick="analytics.identify('cust-9', {{email: 'shopper@example.com', firstName: 'Ewa'}})">Log in</button>
</body></html>"""


def test_snippet_sends_page_and_track_then_identify_links_the_visitor(live_server, page: Page, shop):
    # given a browser source for the shop's origin, and its page with the one-tag snippet
    source, write_key = source_issue(name="Shop website", kind="browser", allowed_origins=[shop.origin])
    shop.html = _shop_page(live_server.url, write_key)
    # when an anonymous visitor opens the page (the snippet records the page view) and views a product
    page.goto(f"{shop.origin}/kurtki")
    page.wait_for_function("window.analytics && window.analytics.initialized === true")
    page.click("#view")
    # then both wait for the visitor to identify
    wait_for(lambda: HeldMessage.objects.count() == 2, message="the page view and the product view held")
    # (the debugger's rows are written just after the messages' own transaction commits)
    wait_for(lambda: set(MessageLog.objects.filter(source=source).values_list("message_type", flat=True))
             == {"page", "track"}, message="both messages in the source's debugger")
    # when the visitor logs in
    page.click("#login")
    # then the contact exists with the visitor's page view and product view
    wait_for(lambda: Event.objects.filter(contact__email="shopper@example.com").count() == 2,
             message="the held messages applied to the contact")
    contact = Contact.objects.get(email="shopper@example.com")
    assert contact.first_name == "Ewa"
    events = {event.type: event.properties for event in Event.objects.filter(contact=contact)}
    assert events["product_view"] == {"category": "kurtki", "product_name": "Parka", "price": 399}
    assert events["page_view"]["url"] == f"{shop.origin}/kurtki"
    assert not HeldMessage.objects.exists()


def test_an_origin_the_source_does_not_allow_is_refused_by_cors(live_server, page: Page, shop, elsewhere):
    # given a browser source that allows only the shop, and its snippet on a page elsewhere
    _, write_key = source_issue(name="Shop website", kind="browser", allowed_origins=[shop.origin])
    elsewhere.html = _shop_page(live_server.url, write_key)
    page.goto(f"{elsewhere.origin}/kurtki")
    # when a page on another origin posts a message with the key (as the library would)
    outcome = page.evaluate(
        """async ([url, key]) => {
            try {
                const response = await fetch(url, {method: "POST", headers: {"Content-Type": "text/plain",
                    "Authorization": "Basic " + btoa(key + ":")},
                    body: JSON.stringify({type: "track", event: "Product Viewed", messageId: "x-1", anonymousId: "a"})});
                return "status " + response.status;
            } catch (error) {
                return "refused: " + error.message;
            }
        }""",
        [f"{live_server.url}/v1/t", write_key],
    )
    # then the browser refuses it (the preflight gets no CORS headers) and nothing is stored
    assert outcome.startswith("refused")
    assert not HeldMessage.objects.exists()
    assert not Event.objects.exists()
