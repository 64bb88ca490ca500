"""Segment templates: one click opens the builder with a ready definition to adjust and save.

RFM — how this product scores it
--------------------------------
Recency, Frequency and Monetary value come from ``purchase`` events (``Event.value`` is the
order total) and are expressed with the contract's own leaves, so an RFM segment is an ordinary,
editable definition:

* **R**ecency  — 3: a purchase in the last 30 days; 2: in the last 90 days; 1: none in 90 days.
  (``event_count`` purchase ``within_days`` 30 / 90 ``gte 1``)
* **F**requency — 3: at least 5 purchases in the last 365 days; 2: 2–4; 1: 0–1.
  (``event_count`` purchase ``within_days`` 365)
* **M**onetary — 3: at least 1000 spent in the last 365 days; 2: 200–999; 1: below 200.
  (``purchase_total`` ``within_days`` 365)

Groups:

* **Champions** — R3, F3, M3: bought in the last 30 days, ≥ 5 purchases and ≥ 1000 in a year.
* **Loyal** — R ≥ 2 and F ≥ 2, not champions: bought in the last 90 days and ≥ 2 purchases a year.
* **At risk** — F ≥ 2 but R1: ≥ 2 purchases in the year, none in the last 90 days.
* **Hibernating** — R1 and F1, but bought at some time: no purchase in 90 days, at most one in
  the year, at least one ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


def purchases(op: str, value: Any, within_days: int | None) -> dict:
    leaf = {"type": "event_count", "event_type": "purchase", "op": op, "value": value}
    if within_days is not None:
        leaf["within_days"] = within_days
    return leaf


def events(event_type: str, op: str, value: Any, within_days: int | None = None) -> dict:
    leaf = {"type": "event_count", "event_type": event_type, "op": op, "value": value}
    if within_days is not None:
        leaf["within_days"] = within_days
    return leaf


EMAIL_CONSENT = {"type": "consent", "channel": "email", "value": True}

R3 = purchases("gte", 1, 30)
R2_OR_BETTER = purchases("gte", 1, 90)
R1 = purchases("eq", 0, 90)
F3 = purchases("gte", 5, 365)
F2_OR_BETTER = purchases("gte", 2, 365)
F1 = purchases("lte", 1, 365)
M3 = {"type": "purchase_total", "within_days": 365, "op": "gte", "value": 1000}
CHAMPIONS = {"all": [R3, F3, M3]}


# The templates page shows the groups in this order, under these names.
GROUPS = {
    "negative": _("Negative target groups"),
    "sales": _("Sales and campaigns"),
    "rfm": _("Customers (RFM)"),
}


@dataclass(frozen=True)
class Preset:
    key: str
    group: str  # a key of GROUPS
    name: str | Promise  # translated when shown; the builder turns it into the new segment's name
    help: str | Promise
    definition: dict
    for_sending: bool = False


PRESETS: list[Preset] = [
    # --- negative target groups (seed 004) ------------------------------------------------------
    Preset(
        "single-visit",
        "negative",
        _("Single visit without interaction"),
        _("One page view, nothing else: no product views, cart, clicks, forms or purchases — and gone for "
        "a month. Typically an accidental ad click; exclude them from remarketing."),
        {
            "all": [
                events("page_view", "eq", 1),
                events("product_view", "eq", 0),
                events("add_to_cart", "eq", 0),
                events("email_click", "eq", 0),
                events("form_submit", "eq", 0),
                events("purchase", "eq", 0),
                {"type": "inactive_days", "value": 30},
            ]
        },
    ),
    Preset(
        "inactive-year",
        "negative",
        _("No activity for a year"),
        _("No event at all in the last 365 days (or never). Consider leaving them out of paid campaigns and "
        "SMS — they burn budget and hurt email reputation."),
        {"all": [{"type": "inactive_days", "value": 365}]},
    ),
    Preset(
        "never-click",
        "negative",
        _("Subscribers who never click"),
        _("Email consent given, but not a single email click ever. Send them less, or a re-permission campaign."),
        {"all": [EMAIL_CONSENT, events("email_click", "eq", 0)]},
    ),
    Preset(
        "interested-long-ago",
        "negative",
        _("Interested long ago, bought once or never"),
        _("Viewed products at some time but not in the last 180 days, and at most one purchase ever."),
        {
            "all": [
                events("product_view", "gte", 1),
                events("product_view", "eq", 0, 180),
                purchases("lte", 1, None),
            ]
        },
    ),
    # --- sales ------------------------------------------------------------------------------------
    Preset(
        "hot-with-consent",
        "sales",
        _("Hot leads with email consent"),
        _("Hot by the temperature thresholds in Settings, and reachable by email."),
        {"all": [{"type": "temperature", "value": "hot"}, EMAIL_CONSENT]},
        for_sending=True,
    ),
    Preset(
        "top-tag-buyers",
        "sales",
        _("Top tag buyers (tag X ≥ 5)"),
        _("Contacts with a tag's score of at least 5 — change the tag to the category you are promoting "
        "(seed 000: “select recipients with tag X of at least N points”)."),
        {"all": [{"type": "tag_score", "tag": "PURCHASE", "op": "gte", "value": 5}]},
        for_sending=True,
    ),
    # --- RFM ----------------------------------------------------------------------------------------
    Preset(
        "rfm-champions",
        "rfm",
        _("Champions"),
        _("R3 F3 M3: a purchase in the last 30 days, at least 5 purchases and at least 1000 spent in the last "
        "365 days. Reward them; ask for reviews."),
        CHAMPIONS,
        for_sending=True,
    ),
    Preset(
        "rfm-loyal",
        "rfm",
        _("Loyal customers"),
        _("R ≥ 2, F ≥ 2, not champions: a purchase in the last 90 days and at least 2 in the last 365 days. "
        "Upsell and loyalty-tier offers."),
        {"all": [R2_OR_BETTER, F2_OR_BETTER, {"not": CHAMPIONS}]},
        for_sending=True,
    ),
    Preset(
        "rfm-at-risk",
        "rfm",
        _("At risk"),
        _("F ≥ 2 but R1: at least 2 purchases in the last 365 days, none in the last 90. Win them back now."),
        {"all": [F2_OR_BETTER, R1]},
        for_sending=True,
    ),
    Preset(
        "rfm-hibernating",
        "rfm",
        _("Hibernating"),
        _("R1 F1: no purchase in the last 90 days, at most one in the last 365, but at least one ever. "
        "Cheap reactivation only."),
        {"all": [R1, F1, purchases("gte", 1, None)]},
        for_sending=True,
    ),
]
PRESETS_BY_KEY = {preset.key: preset for preset in PRESETS}
RFM_HELP = __doc__.split("RFM — how this product scores it", 1)[1].strip().split("\n\n")[0] if __doc__ else ""
