"""Browser: toasts stack in the bottom-right corner, at most four at once, clear of the header's
buttons, and expire by themselves."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect


def _overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1440, 390])
def test_toasts_stack_in_a_corner_and_expire(live_server, login_page, marketer, width):
    page = login_page(marketer)
    page.set_viewport_size({"width": width, "height": 844})
    page.goto(f"{live_server.url}/contacts/")
    # when six messages arrive at once
    page.evaluate("for (let i = 1; i <= 6; i++) window.MH.toast('Saved change ' + i, 'success')")
    live = page.locator("#toasts .toast:not(.is-leaving)")
    # then four show, the newest last, in the bottom half of the screen
    expect(live).to_have_count(4)
    expect(live.last).to_contain_text("Saved change 6")
    expect(live.first).to_contain_text("Saved change 3")
    box = page.locator("#toasts").bounding_box()
    assert box is not None and box["y"] > 844 / 2
    # and none covers a header button
    for button in page.locator(".page-actions .btn").all():
        button_box = button.bounding_box()
        if button_box:
            assert not any(_overlaps(toast.bounding_box(), button_box) for toast in live.all())
    # and they expire by themselves
    expect(page.locator("#toasts .toast")).to_have_count(0, timeout=8000)
