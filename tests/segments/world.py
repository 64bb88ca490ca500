"""Hypothesis strategies for small random worlds (contacts with tags, events, consents, stages,
tiers, saved segments) and random segment definitions that talk about them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import connection
from django.utils import timezone
from hypothesis import strategies as st

from contacts.models import Consent, Contact, ContactTag, Event, Tag
from leads.models import ContactStage, Funnel, Stage, TemperatureSettings
from loyalty.models import ContactTier, Program, Tier
from segments.models import Segment

TAG_NAMES = ["kurtki", "Sukienki", "VIP klient"]
TAG_REFERENCES = ["kurtki", "KURTKI", "sukienki", "vip  klient", "nieznany"]  # spellings used in leaves
CITIES = ["Warszawa", "KRAKÓW", "kraków", "Łódź", ""]
CITY_VALUES = ["warszawa", "Kraków", "ŁÓDŹ", "kra", "ów", "Gdańsk"]
COUNTRIES = ["PL", "DE", ""]
FIRST_NAMES = ["Anna", "ANNA", "Zoë", ""]
PLANS = ["pro", "PRO", "free", "", None, 5, True]
LTVS = [0, 10, 99.5, 100, "100", "12.5", "abc", None, -3]
CATEGORIES = ["Kurtki", "kurtki", "Buty", None, 7]
EVENT_TYPES = ["page_view", "product_view", "purchase", "email_click"]
CHANNELS = ["email", "sms"]
FUNNEL = "Sprzedaż"
STAGES = ["New", "MQL", "Customer"]
PROGRAM = "Klub"
TIERS = ["Silver", "Gold"]

small_ints = st.integers(min_value=0, max_value=6)


# --- the world ----------------------------------------------------------------------------------
contact_strategy = st.fixed_dictionaries(
    {
        "first_name": st.sampled_from(FIRST_NAMES),
        "city": st.sampled_from(CITIES),
        "country": st.sampled_from(COUNTRIES),
        "score": st.integers(min_value=-20, max_value=160),
        # birthdays near today's month/day and 29 February exercise the whole-years edges
        "birth": st.one_of(st.none(), st.tuples(st.integers(0, 70), st.integers(-2, 2)), st.just("feb29")),
        "properties": st.dictionaries(
            st.sampled_from(["plan", "ltv"]),
            st.one_of(st.sampled_from(PLANS), st.sampled_from(LTVS)),
            max_size=2,
        ),
        "tags": st.dictionaries(st.sampled_from(TAG_NAMES), st.integers(min_value=1, max_value=7), max_size=3),
        "consents": st.dictionaries(st.sampled_from(CHANNELS), st.booleans(), max_size=2),
        "events": st.lists(
            st.tuples(
                st.sampled_from(EVENT_TYPES),
                st.integers(min_value=0, max_value=420),  # days ago
                st.sampled_from(CATEGORIES),
                st.sampled_from([None, Decimal("19.99"), Decimal("50.00"), Decimal("120.50")]),
            ),
            max_size=5,
        ),
        "stage": st.one_of(st.none(), st.sampled_from(STAGES)),
        "tier": st.one_of(st.none(), st.sampled_from(TIERS)),
    }
)

world_strategy = st.lists(contact_strategy, min_size=1, max_size=7)


def _birth_date(spec, today: dt.date) -> dt.date | None:
    if spec is None:
        return None
    if spec == "feb29":
        return dt.date(2000, 2, 29)
    years, day_shift = spec
    from segments.compiler import years_before

    return years_before(today, years) + dt.timedelta(days=day_shift)


def ensure_event_partitions(now: dt.datetime) -> None:
    """Monthly event partitions for the worlds' time span (DDL: once per test, not per example)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [now - dt.timedelta(days=450), now])


def build_world(contacts: list[dict], now: dt.datetime) -> list[int]:
    """Write the drawn world with bulk inserts (inside the caller's transaction)."""
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    tags = {name: Tag.objects.get_or_create(key=name.lower(), defaults={"name": name})[0] for name in TAG_NAMES}
    funnel = Funnel.objects.create(name=FUNNEL)
    stages = {name: Stage.objects.create(funnel=funnel, name=name, position=index) for index, name in enumerate(STAGES)}
    program = Program.objects.create(name=PROGRAM, metric={"type": "score"})
    tiers = {name: Tier.objects.create(program=program, name=name, min=index * 10) for index, name in enumerate(TIERS)}
    today = timezone.localdate(now)
    ids: list[int] = []
    rows_tags, rows_consents, rows_events, rows_stages, rows_tiers = [], [], [], [], []
    for index, spec in enumerate(contacts):
        contact = Contact.objects.create(
            email=f"w{index}@example.com",
            first_name=spec["first_name"],
            city=spec["city"],
            country=spec["country"],
            score=spec["score"],
            birth_date=_birth_date(spec["birth"], today),
            properties=spec["properties"],
        )
        ids.append(contact.pk)
        for name, score in spec["tags"].items():
            rows_tags.append(ContactTag(contact=contact, tag=tags[name], score=score))
        for channel, granted in spec["consents"].items():
            rows_consents.append(Consent(contact=contact, channel=channel, granted=granted))
        last = None
        for number, (kind, days_ago, category, value) in enumerate(spec["events"]):
            occurred = now - dt.timedelta(days=days_ago, hours=number)
            properties = {} if category is None else {"category": category}
            if kind == "purchase" and value is not None:
                properties["value"] = float(value)
            rows_events.append(
                Event(event_id=f"w{index}-{number}", contact=contact, type=kind, occurred_at=occurred,
                      properties=properties, value=value if kind == "purchase" else None)
            )
            last = occurred if last is None or occurred > last else last
        if last is not None:
            Contact.objects.filter(pk=contact.pk).update(last_activity_at=last)
        if spec["stage"]:
            rows_stages.append(ContactStage(contact=contact, funnel=funnel, stage=stages[spec["stage"]]))
        if spec["tier"]:
            rows_tiers.append(ContactTier(contact=contact, program=program, tier=tiers[spec["tier"]]))
    ContactTag.objects.bulk_create(rows_tags)
    Consent.objects.bulk_create(rows_consents)
    Event.objects.bulk_create(rows_events)
    ContactStage.objects.bulk_create(rows_stages)
    ContactTier.objects.bulk_create(rows_tiers)
    return ids


# --- definitions --------------------------------------------------------------------------------
def number_comparison(values=small_ints, *, allow_float: bool = False, allow_in: bool = True):
    number = values if not allow_float else st.one_of(values, st.sampled_from([0.5, 2.5, 99.5, 50.0]))
    options = [
        st.tuples(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), number),
        st.tuples(st.just("between"), st.tuples(number, number).map(lambda pair: sorted(pair))),
    ]
    if allow_in:
        options.append(st.tuples(st.just("in"), st.lists(number, min_size=1, max_size=3)))
    return st.one_of(options)


def _leaf(kind: str, **fields):
    return {"type": kind, **fields}


def _with_comparison(kind: str, comparison, **fields):
    return comparison.map(lambda pair: _leaf(kind, op=pair[0], value=pair[1], **fields))


where_condition = st.one_of(
    st.builds(lambda op, value: {"property": "category", "op": op, "value": value},
              st.sampled_from(["eq", "ne"]), st.sampled_from(["kurtki", "BUTY", 7])),
    st.builds(lambda value: {"property": "category", "op": "in", "value": value},
              st.lists(st.sampled_from(["kurtki", "Buty", 7]), min_size=1, max_size=2)),
    st.builds(lambda value: {"property": "category", "op": "contains", "value": value}, st.sampled_from(["urt", "UT"])),
    st.builds(lambda op, value: {"property": "value", "op": op, "value": value},
              st.sampled_from(["gt", "lte"]), st.sampled_from([20, 50.0, 100])),
)

windows = st.sampled_from([None, 7, 30, 365])


def leaf_strategy(segment_ids: list[int]):
    leaves = [
        st.builds(lambda tag: _leaf("has_tag", tag=tag), st.sampled_from(TAG_REFERENCES)),
        st.sampled_from(TAG_REFERENCES).flatmap(
            lambda tag: _with_comparison("tag_score", number_comparison(st.integers(0, 8), allow_float=True), tag=tag)
        ),
        _with_comparison("score", number_comparison(st.sampled_from([-5, 0, 49, 50, 99, 100, 150]), allow_float=True)),
        st.builds(lambda value: _leaf("temperature", value=value), st.sampled_from(["cold", "warm", "hot"])),
        st.tuples(st.sampled_from(EVENT_TYPES), st.lists(where_condition, max_size=2), windows).flatmap(
            lambda spec: _with_comparison(
                "event_count", number_comparison(st.integers(0, 3)), event_type=spec[0], within_days=spec[2],
                **({"where": spec[1]} if spec[1] else {}),
            )
        ),
        st.builds(lambda days: _leaf("inactive_days", value=days), st.sampled_from([1, 30, 365])),
        windows.flatmap(
            lambda window: _with_comparison(
                "purchase_total",
                number_comparison(st.sampled_from([0, 19.99, 50, 69.99, 100, 1000]), allow_float=True),
                within_days=window,
            )
        ),
        st.tuples(st.sampled_from(["city", "country", "first_name"]), st.sampled_from(["eq", "ne", "contains"]),
                  st.sampled_from(CITY_VALUES + ["pl", "anna", "zoë"])).map(
            lambda spec: _leaf("attribute", name=spec[0], op=spec[1], value=spec[2])
        ),
        st.tuples(st.sampled_from(["city", "first_name"]), st.lists(st.sampled_from(CITY_VALUES + ["anna"]), min_size=1,
                                                                     max_size=3)).map(
            lambda spec: _leaf("attribute", name=spec[0], op="in", value=spec[1])
        ),
        st.tuples(st.sampled_from(["city", "country", "properties.plan", "properties.ltv", "properties.none"]),
                  st.sampled_from(["is_empty", "not_empty"])).map(
            lambda spec: _leaf("attribute", name=spec[0], op=spec[1])
        ),
        st.tuples(st.sampled_from(["eq", "ne", "in", "contains"]),
                  st.sampled_from(["pro", "FREE", 5, True, "5"])).map(
            lambda spec: _leaf("attribute", name="properties.plan", op=spec[0],
                               value=[spec[1]] if spec[0] == "in" else (str(spec[1]) if spec[0] == "contains" else spec[1]))
        ),
        _with_comparison("attribute", number_comparison(st.sampled_from([0, 10, 12.5, 100]), allow_float=True, allow_in=False),
                         name="properties.ltv"),
        _with_comparison("age", number_comparison(st.sampled_from([0, 17, 18, 25, 26, 69, 70]))),
        st.builds(lambda channel, value: _leaf("consent", channel=channel, value=value),
                  st.sampled_from(["email", "EMAIL", "sms", "push"]), st.booleans()),
        st.builds(lambda stage: _leaf("stage", funnel="sprzedaż", stage=stage), st.sampled_from(STAGES + ["mql", "Lost"])),
        st.builds(lambda tier: _leaf("tier", program="KLUB", tier=tier), st.sampled_from(TIERS + ["gold", "Platinum"])),
    ]
    if segment_ids:
        leaves.append(st.builds(lambda pk: _leaf("segment", segment_id=pk), st.sampled_from(segment_ids)))
    return st.one_of(leaves)


def tree_strategy(segment_ids: list[int], max_leaves: int = 8):
    return st.recursive(
        leaf_strategy(segment_ids),
        lambda children: st.one_of(
            st.lists(children, min_size=0, max_size=3).map(lambda items: {"all": items}),
            st.lists(children, min_size=0, max_size=3).map(lambda items: {"any": items}),
            children.map(lambda item: {"not": item}),
        ),
        max_leaves=max_leaves,
    )


def saved_segments(definitions: list[tuple[dict, bool]]) -> list[int]:
    """Saved segments to nest (each may only refer to the ones saved before it: no cycles)."""
    return [
        Segment.objects.create(name=f"nested {index}", definition=definition, for_sending=for_sending).pk
        for index, (definition, for_sending) in enumerate(definitions)
    ]
