"""Two identifies of the same anonymous visitor at the same moment apply its held messages once."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection

from contacts.models import Contact, Event
from tests.tracking.helpers import message, post, server_source
from tracking.models import HeldMessage, Identity

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def test_two_concurrent_identifies_apply_the_visitor_once():
    # given an anonymous visitor with five held product views, and an existing contact
    _, key = server_source()
    views = [message(anonymousId="racer", event="Product Viewed", properties={"category": "kurtki"}) for _ in range(5)]
    post("/v1/batch", {"batch": views}, key=key)
    Contact.objects.create(email="racer@example.com")
    barrier = threading.Barrier(2)
    codes: list = []

    def identify() -> None:
        try:
            barrier.wait(30)
            response = post("/v1/identify", message("identify", anonymousId="racer", traits={"email": "racer@example.com"}), key=key)
            codes.append(response.status_code if response.status_code == 200 else (response.status_code, response.content))
        except Exception as exc:  # reported by the assertion below, not lost in the thread
            codes.append(repr(exc))
        finally:
            connection.close()

    # when two identifies (two tabs logging in) arrive together
    threads = [threading.Thread(target=identify) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then both succeed, and the five views became five events, once
    assert codes == [200, 200]
    assert Event.objects.filter(contact__email="racer@example.com", type="product_view").count() == 5
    assert not HeldMessage.objects.exists()
    assert Identity.objects.filter(kind="anonymous", value="racer").count() == 1
