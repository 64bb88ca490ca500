"""The vendored analytics.js in a real browser: a shop page with the one-tag snippet of a browser
source sends a page view and tracks to this server; a page on an origin the source does not
allow is refused by CORS."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from playwright.sync_api import Page

from automation.starter import install_starter_rules
from contacts.models import Contact, Event, ProfileMerge
from segments.services import segment_count
from tests.automation.factories import process_all
from tests.conftest import wait_for
from tests.tracking.helpers import merge_queued
from tracking.models import Identity, MessageLog
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
<button id="jacket" onclick="analytics.track('Product Viewed', {{category: 'kurtki', name: 'Parka', price: 399}})">Jacket</button>
<button id="dress" onclick="analytics.track('Product Viewed', {{category: 'sukienki', name: 'Midi', price: 259}})">Dress</button>
<button id="login" onclick="analytics.identify('cust-9', {{email: 'shopper@example.com', firstName: 'Ewa'}})">Log in</button>
</body></html>"""


def _profile() -> Contact | None:
    return Contact.all_objects.filter(is_anonymous=True).first()


def test_anonymous_visitor_is_scored_then_merges_into_the_contact_on_login(live_server, page: Page, shop, marketer,
                                                                         login_page):
    # given the starter rules (a product view adds 1 to its category's tag), a browser source for the
    # shop's origin, its page with the one-tag snippet, and a customer who already has kurtki 2
    install_starter_rules()
    source, write_key = source_issue(name="Shop website", kind="browser", allowed_origins=[shop.origin])
    shop.html = _shop_page(live_server.url, write_key)
    Contact.objects.create(email="shopper@example.com").add_tag("kurtki", 2)
    kurtki_5 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 5}
    kurtki_any = {"type": "has_tag", "tag": "kurtki"}
    # when an anonymous visitor opens the page (the snippet records the page view), views four jackets and a dress
    page.goto(f"{shop.origin}/kurtki")
    page.wait_for_function("window.analytics && window.analytics.initialized === true")
    for _ in range(4):
        page.click("#jacket")
    page.click("#dress")
    wait_for(lambda: (profile := _profile()) and Event.objects.filter(contact=profile).count() == 6,
             message="the page view and five product views on the visitor's anonymous profile")
    process_all()
    # then the anonymous profile is scored like anyone, and is nobody's contact: not in the list, not counted
    profile = _profile()
    assert profile is not None
    assert dict(profile.contact_tags.values_list("tag__name", "score")) == {"kurtki": 4, "sukienki": 1}
    assert list(Contact.objects.values_list("email", flat=True)) == ["shopper@example.com"]
    assert segment_count(kurtki_any) == 1  # the customer only
    # (the debugger's rows are written just after the messages' own transaction commits)
    wait_for(lambda: set(MessageLog.objects.filter(source=source).values_list("message_type", flat=True))
             == {"page", "track"}, message="the messages in the source's debugger")
    # when the visitor logs in as the customer
    page.click("#login")
    wait_for(lambda: ProfileMerge.objects.exists(), message="the identify queued the profile's merge")
    merge_queued()  # the worker's part
    assert _profile() is None
    process_all()
    # then the customer has the visitor's scores added to theirs, its events on the timeline, and
    # the "kurtki ≥ 5" segment counts them
    contact = Contact.objects.get(email="shopper@example.com")
    assert contact.first_name == "Ewa"
    assert dict(contact.contact_tags.values_list("tag__name", "score")) == {"kurtki": 6, "sukienki": 1}
    types = sorted(Event.objects.filter(contact=contact).values_list("type", flat=True))
    assert types == ["page_view"] + ["product_view"] * 5 + ["visitor_merged"]
    merge = Event.objects.get(contact=contact, type="visitor_merged")
    assert merge.properties["events"] == 6 and merge.properties["tags"] == {"kurtki": 4, "sukienki": 1}
    assert segment_count(kurtki_5) == 1
    assert Identity.objects.filter(contact=contact).count() == 2  # the userId and the browser's anonymousId
    # and the timeline on the card says so, as a marketer sees it
    login_page(marketer)
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    timeline = page.locator("#timeline")
    timeline.get_by_text("Anonymous visitor merged").first.wait_for()
    assert "+4 kurtki" in timeline.inner_text()


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
    assert not Contact.all_objects.exists()
    assert not Event.objects.exists()
