"""The one deterministic data generator: the demo shop (``seed_demo``) and the benchmark (``bench``).

A Polish fashion & jewellery shop with a year of behaviour. Everything is generated *inside* the
database with set-based SQL (``INSERT … SELECT … FROM generate_series``); Python only builds a few
small arrays (names, cities, categories, prices) that the SQL indexes into. Randomness is a hash of
the row number (``hashint8extended(n, salt)``), so a given ``contacts`` always yields the same rows
(timestamps count back from the hour the data was generated).

What is generated, in order — the same shop for the demo and for the benchmark, at any size:

1. reference data: ~200 tags (shop categories, PURCHASE, newsletter and a long tail), the demo
   users, the starter rules (``automation.starter.install_starter_rules``) and two stage rules
   (``set_stage``: every order moves the contact to Customer, a contact-form request to SQL), one
   funnel, one loyalty programme, temperature settings;
2. contacts (names/cities from Faker pl_PL, countries mostly PL, birth dates, properties);
3. ~20 events per contact over the last 365 days (exponentially distributed per contact, 5% never
   active), one ``done`` receipt per event;
4. the rules applied to those events **in SQL with the app's own condition compiler**: the lead
   score ledger, the rules' guard rows (``RuleApplication``, one per rule firing), rule-given tags
   and the stage rules' moves, so scores, tags and stages are what the rules would have given;
5. a long tail of manually assigned / imported tags (Zipf-like popularity, skewed scores); every
   tag change, by rule or by hand, in the tag-score history (``TagScoreChange``);
6. ``score`` = sum of the ledger, ``last_activity_at`` = last event; owners (the two sales users)
   for ~60% of hot and ~12% of warm leads, their lead statuses with the history of every status
   change; notes (1–3) on most worked leads and on ~2% of the other contacts; consents with their
   history;
7. the funnel: New → Engaged → MQL → SQL by activity and temperature (moves made through the API)
   until the first stage-rule firing, from then on the stage rules' moves, each a
   ``StageTransition``; loyalty tiers;
8. 20 saved segments of the shapes shops build (broad, rare, nested, segment of segment, event
   counts with and without a dedicated index, tags, temperature, tiers, stages, geography, age),
   their memberships filled by the app's own full refresh (``segments.services.segment_refresh``).
   They are at most ``SEGMENT_INCREMENTAL_MAX_SEGMENTS``, so the rules engine re-evaluates all of
   them for the contacts of every batch of events, as in a real shop.

For large runs (``bulk=True``) the indexes and foreign keys of the big tables are dropped before the
load and rebuilt after it (one sort per index instead of 20M random inserts); the definitions are
read from the catalogue, so whatever indexes the apps' migrations define come back unchanged.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from faker.providers.address.pl_PL import Provider as Address
from faker.providers.person.pl_PL import Provider as Person

from automation.models import EventReceipt, Rule, RuleApplication
from automation.rules import rule_save, validate_rule
from automation.starter import install_starter_rules
from contacts.models import Consent, ConsentChange, Contact, ContactTag, Event, Note, Tag, TagScoreChange, tag_key
from core.conditions import compile_conditions
from demo.users import ensure_demo_users
from leads.models import (
    ContactStage,
    Funnel,
    LeadStatusChange,
    ScoreChange,
    Stage,
    StageTransition,
    TemperatureSettings,
)
from leads.tasks import score_trend_refresh
from loyalty.models import ContactTier, Program, Tier
from segments.models import Segment
from segments.services import segment_refresh
from segments.validation import validate_definition

log = logging.getLogger("demo.datagen")

# --- The shop -------------------------------------------------------------------------------------
# (tag/category name, product noun, URL slug, price from, price to) — prices in PLN.
CATEGORIES: list[tuple[str, str, str, int, int]] = [
    ("sukienki", "Sukienka", "sukienki", 129, 599),
    ("kurtki", "Kurtka", "kurtki", 249, 999),
    ("buty", "Buty", "buty", 179, 799),
    ("torebki", "Torebka", "torebki", 149, 899),
    ("biżuteria srebrna", "Bransoletka srebrna", "bizuteria-srebrna", 89, 499),
    ("bluzki", "Bluzka", "bluzki", 79, 299),
    ("spodnie", "Spodnie", "spodnie", 119, 399),
    ("swetry", "Sweter", "swetry", 139, 459),
    ("płaszcze", "Płaszcz", "plaszcze", 399, 1499),
    ("diamenty", "Pierścionek z diamentem", "diamenty", 1490, 12990),
    ("biżuteria złota", "Kolczyki złote", "bizuteria-zlota", 390, 3490),
    ("spódnice", "Spódnica", "spodnice", 99, 349),
    ("zegarki", "Zegarek", "zegarki", 299, 2990),
    ("okulary", "Okulary przeciwsłoneczne", "okulary", 149, 699),
    ("szale", "Szal", "szale", 69, 249),
    ("bielizna", "Komplet bielizny", "bielizna", 89, 349),
]
DIAMONDS = [c[0] for c in CATEGORIES].index("diamenty") + 1  # 1-based, as in SQL arrays
PRODUCT_LINES = [
    "Aurora", "Lena", "Mila", "Wiktoria", "Zofia", "Nova", "Bałtyk", "Tatry", "Wawel", "Sopot",
    "Malwa", "Jaśmin", "Kalina", "Iga", "Hania", "Róża", "Bursztyn", "Perła", "Opal", "Luna",
]
BRANDS = [
    "Atelier Wisła", "Złota Nić", "Srebrny Dzwon", "Lniana", "Mazurek", "Bursztyn & Co", "Kamea",
    "Polna", "Modrak", "Zorza", "Vistula Line", "Lazur",
]
CAMPAIGNS = [
    "Newsletter tygodniowy", "Nowa kolekcja wiosna", "Wyprzedaż zimowa", "Black Friday", "Dzień Matki",
    "Walentynki", "Biżuteria na prezent", "Diamenty – kolekcja premium", "Porzucony koszyk – przypomnienie",
    "Powrót do szkoły", "Mikołajki", "Kolekcja jesień",
]
FORMS = ["kontakt", "ankieta satysfakcji", "e-book: trendy sezonu", "zapis na pokaz", "konkurs"]
CUSTOM_EVENTS = ["app_open", "review_written", "wishlist_add", "store_visit", "chat_started"]
SOURCES = ["sklep internetowy", "newsletter", "facebook", "instagram", "import", "sklep stacjonarny"]
SIZES = ["XS", "S", "M", "L", "XL"]
EMAIL_DOMAINS = ["example.com", "example.pl", "example.net", "example.org"]
FOREIGN_CITIES = [  # (country, city); appearances set the country mix of the non-Polish 14%
    ("DE", "Berlin"), ("DE", "Hamburg"), ("DE", "München"), ("DE", "Köln"), ("DE", "Frankfurt am Main"),
    ("DE", "Leipzig"), ("DE", "Dresden"), ("CZ", "Praha"), ("CZ", "Brno"), ("CZ", "Ostrava"),
    ("SK", "Bratislava"), ("SK", "Košice"), ("LT", "Vilnius"), ("LT", "Kaunas"), ("GB", "London"),
    ("GB", "Manchester"), ("UA", "Lviv"),
]
# The long tail: interests, traits, campaigns — assigned by hand or imported, Zipf-popular.
LONG_TAIL_BASE = [
    "Zainteresowany promocjami", "Sport", "Pobrał e-booka", "VIP", "Prezenty", "Ślub", "Mama",
    "Klient hurtowy", "Kolor: czarny", "Kolor: czerwony", "Kolor: beżowy", "Kolor: granatowy",
    "Kolor: zielony", "Styl: klasyczny", "Styl: boho", "Styl: sportowy", "Styl: elegancki",
    "Styl: minimalistyczny", "Rozmiar: XS", "Rozmiar: S", "Rozmiar: M", "Rozmiar: L", "Rozmiar: XL",
    "Ekologia", "Len i bawełna", "Wełna", "Skóra naturalna", "Weganka", "Programy lojalnościowe",
    "Aplikacja mobilna", "Sklep stacjonarny", "Zwroty", "Reklamacja", "Ankieta", "Recenzent",
    "Instagram", "Facebook", "TikTok", "Pinterest", "Influencer", "Polecenie", "Kod rabatowy",
    "Darmowa dostawa", "Pakowanie na prezent", "Grawer", "Pierścionek zaręczynowy", "Obrączki",
    "Komunia", "Studniówka", "Wesele – gość", "Urlop", "Narty", "Plaża", "Biuro", "Wieczór",
]
CITIES_EXTRA_TAGS = ["Warszawa", "Kraków", "Wrocław", "Poznań", "Gdańsk", "Łódź", "Katowice", "Lublin", "Szczecin"]
STAGES = ["New", "Engaged", "MQL", "SQL", "Customer"]
FUNNEL_NAME = "Lejek sprzedażowy"
# The funnel's entry rules (``set_stage`` actions, applied by the rules engine like any rule): every
# order makes a customer; asking for contact through the form makes a sales-qualified lead, which
# moves a past customer back to SQL until the next order (the engine records backward moves too).
STAGE_RULES: list[dict[str, Any]] = [
    {
        "name": "Zamówienie → etap Customer",
        "description": "Każde zamówienie przenosi kontakt do etapu Customer w lejku sprzedażowym.",
        "trigger": {"event_type": "purchase", "where": []},
        "actions": [{"type": "set_stage", "funnel": FUNNEL_NAME, "stage": "Customer"}],
    },
    {
        "name": "Formularz kontaktowy → etap SQL",
        "description": "Prośba o kontakt przez formularz to lead dla działu sprzedaży.",
        "trigger": {"event_type": "form_submit", "where": [{"property": "name", "op": "eq", "value": "kontakt"}]},
        "actions": [{"type": "set_stage", "funnel": FUNNEL_NAME, "stage": "SQL"}],
    },
]
PROGRAM_NAME = "Klub Stylu"
TIERS = [("Brązowy", 0, 5), ("Srebrny", 6, 7), ("Złoty", 15, 10)]
PALETTE = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#dc2626", "#7c3aed", "#db2777", "#475569"]

# {tag}: the contact's favourite category, {size}: their preferred size.
NOTE_TEXTS = [
    "Rozmowa telefoniczna: interesuje się kolekcją {tag}, prosi o ofertę na e-mail.",
    "Klientka pytała o dostępność rozmiaru {size}. Odezwać się po dostawie.",
    "Wysłano kod rabatowy 10% na {tag}. Sprawdzić, czy użyty.",
    "Umówione spotkanie w salonie w przyszłym tygodniu.",
    "Zainteresowana pierścionkiem zaręczynowym — budżet ok. 5000 zł.",
    "Nie odbiera telefonu, spróbować ponownie za kilka dni.",
    "Zwrot zamówienia (rozmiar {size} za mały) — wysłano instrukcję i etykietę.",
    "Prosi o powiadomienie, gdy wrócą {tag} w rozmiarze {size}.",
    "Reklamacja przyjęta, wymiana w toku.",
    "Zmiana adresu dostawy na prośbę klienta.",
]
LOST_REASONS = [
    "Przegrana z konkurencją (cena)", "Brak budżetu w tym sezonie", "Nie odpowiada od miesiąca",
    "Kupiła w salonie stacjonarnym innej marki", "Rezygnacja po zwrocie",
]

# Tables whose indexes/foreign keys are rebuilt around a bulk load.
BULK_TABLES = [
    "contacts_contact", "automation_event", "automation_eventreceipt", "contacts_contacttag",
    "leads_scorechange", "automation_ruleapplication", "contacts_consent", "contacts_consentchange",
    "leads_contactstage", "leads_stagetransition", "loyalty_contacttier", "contacts_tagscorechange",
]
TEMP_TABLES = ["mh_gen_contact", "mh_tag_delta", "mh_match", "mh_score", "mh_stage", "mh_stage_hit", "mh_stage_move",
               "mh_lead"]
# Tables the generator fills (for ANALYZE/VACUUM and for the reset).
GENERATED_TABLES = BULK_TABLES + [
    "contacts_tag", "contacts_note", "leads_leadstatuschange", "automation_rule", "leads_funnel",
    "leads_stage", "loyalty_program", "loyalty_tier", "segments_segment", "leads_temperaturesettings",
    "leads_scoretrend",
]
# Written after the load by the segments' own refresh; vacuumed with the generated tables.
MEMBERSHIP_TABLES = ["segments_segmentmember", "segments_segmentsize", "core_outboxmessage"]


def _feminine(surname: str) -> str:
    for male, female in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")):
        if surname.endswith(male):
            return surname[: -len(male)] + female
    return surname


def _name_lists() -> dict[str, list[str]]:
    """A few hundred Polish names and cities from Faker's pl_PL data, in a fixed order."""
    male_last = list(dict.fromkeys(list(Person.male_last_names) + sorted(Person.unisex_last_names)[:100]))
    return {
        "first_f": list(Person.first_names_female),
        "first_m": list(Person.first_names_male),
        "last_m": male_last,
        "last_f": [_feminine(name) for name in male_last],
        "cities": list(Address.cities),  # ordered roughly by size: the Zipf pick favours big cities
    }


def long_tail_tags() -> list[str]:
    """~170 long-tail tag names (with the categories, PURCHASE and newsletter: ~190 tags)."""
    names = list(LONG_TAIL_BASE)
    names += [f"Kampania: {c}" for c in CAMPAIGNS]
    names += [f"Marka: {b}" for b in BRANDS]
    names += [f"Kolekcja: {line}" for line in PRODUCT_LINES]
    names += [f"Miasto: {c}" for c in CITIES_EXTRA_TAGS]
    names += [f"Targi {year}" for year in range(2019, 2026)]
    names += [f"Webinar {n}" for n in range(1, 31)]
    names += [f"Segment importu {n}" for n in range(1, 21)]
    return names


# --- Result ---------------------------------------------------------------------------------------
@dataclass
class GenerationReport:
    contacts: int
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "contacts": self.contacts,
            "seconds": round(self.seconds, 1),
            "steps_s": {k: round(v, 2) for k, v in self.steps.items()},
            "rows": self.rows,
        }


class _Runner:
    """Executes and times the generator's statements on one cursor."""

    def __init__(self, cursor, report: GenerationReport, echo: Callable[[str], None] | None) -> None:
        self.cursor = cursor
        self.report = report
        self.echo = echo

    def run(self, step: str, sql: str, params: Any = None) -> int:
        if isinstance(params, dict):
            sql = _typed_arrays(sql, params)
        started = time.perf_counter()
        self.cursor.execute(sql, params)
        elapsed = time.perf_counter() - started
        self.report.steps[step] = self.report.steps.get(step, 0.0) + elapsed
        if self.echo and elapsed > 1:
            self.echo(f"  {step}: {elapsed:.1f}s")
        return self.cursor.rowcount

    def value(self, sql: str, params: Any = None) -> Any:
        self.cursor.execute(sql, params)
        row = self.cursor.fetchone()
        return row[0] if row else None


def _typed_arrays(sql: str, params: dict[str, Any]) -> str:
    """Django's client-side binding writes a list as an untyped ``'{…}'`` literal, which cannot be
    subscripted: give every list parameter its array type (``(%(cat)s::text[])[i]``)."""
    for name, value in params.items():
        if isinstance(value, list) and value:
            first = value[0]
            kind = "text" if isinstance(first, str) else "float8" if isinstance(first, float) else "bigint"
            sql = sql.replace(f"%({name})s", f"(%({name})s::{kind}[])")
    return sql


# --- Column defaults for raw INSERTs --------------------------------------------------------------
def _defaults(model, given: Iterable[str]) -> tuple[list[str], list[Any]]:
    """Columns of ``model`` not in ``given`` with their Python-side defaults, so a raw INSERT keeps
    working when an area adds a NOT NULL field with a default to its model later."""
    given = set(given)
    columns, values = [], []
    for f in model._meta.concrete_fields:
        if f.column in given or f.primary_key or getattr(f, "generated", False):
            continue
        if f.null and not f.has_default():
            continue
        columns.append(f.column)
        values.append(f.get_db_prep_save(f.get_default(), connection))
    return columns, values


def _has_column(model, column: str) -> bool:
    return any(f.column == column for f in model._meta.concrete_fields)


def _insert_select(model, columns: dict[str, str], tail: str) -> tuple[str, list[Any]]:
    """``INSERT INTO <model> (cols…) SELECT exprs…, <defaults> <tail>``; returns SQL and the
    default values (positional parameters that come *before* any parameters in ``tail``)."""
    extra_cols, extra_vals = _defaults(model, columns)
    cols = list(columns) + extra_cols
    exprs = list(columns.values()) + ["%s"] * len(extra_vals)
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(cols)}) SELECT {', '.join(exprs)} {tail}"
    return sql, extra_vals


# --- Bulk-load mode: drop indexes/FKs of the big tables, rebuild after ----------------------------
@contextmanager
def _without_indexes(run: _Runner, tables: list[str]):
    cur = run.cursor
    cur.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
        FROM pg_constraint c
        WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype IN ('p', 'u', 'f') AND c.conparentid = 0
          AND NOT (c.contype IN ('p', 'u') AND EXISTS (
              SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid))
        """,
        [tables],
    )
    constraints = cur.fetchall()
    cur.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
        """,
        [tables],
    )
    indexes = cur.fetchall()
    # Pending deferred FK checks (rows the ORM just wrote) forbid ALTER TABLE: run them now.
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table, name, _definition, contype in constraints:
        if contype == "f":
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for table, name, _definition, contype in constraints:
        if contype != "f":
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cur.execute(f"DROP INDEX {name}")
    yield
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table, name, definition, contype in constraints:
        if contype != "f":
            run.run("rebuild indexes", f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for _name, definition in indexes:
        run.run("rebuild indexes", definition.replace(" ON ONLY ", " ON "))
    for table, name, definition, contype in constraints:
        if contype == "f":
            run.run("rebuild foreign keys", f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


# --- Reference data (ORM: a few rows) -------------------------------------------------------------
def _reference_data(anchor: datetime) -> dict[str, Any]:
    names = [c[0] for c in CATEGORIES] + ["PURCHASE", "newsletter"] + long_tail_tags()
    created = anchor - timedelta(days=800)
    existing = set(Tag.objects.values_list("key", flat=True))
    Tag.objects.bulk_create(
        [
            Tag(name=name, key=tag_key(name), colour=PALETTE[i % len(PALETTE)], created_at=created)
            for i, name in enumerate(names)
            if tag_key(name) not in existing
        ],
        ignore_conflicts=True,
    )
    ensure_demo_users()
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["sales", "sales2", "marketer"])}
    install_starter_rules()
    funnel, _ = Funnel.objects.get_or_create(
        name=FUNNEL_NAME, defaults={"description": "Od pierwszej wizyty do zakupu.", "created_at": created}
    )
    for position, stage in enumerate(STAGES, start=1):
        Stage.objects.get_or_create(funnel=funnel, name=stage, defaults={"position": position})
    # validated and saved as the rule editor saves them (the stages must exist first)
    existing_rules = set(Rule.objects.filter(name__in=[r["name"] for r in STAGE_RULES]).values_list("name", flat=True))
    for definition in STAGE_RULES:
        if definition["name"] not in existing_rules:
            rule_save(Rule(created_at=created), validate_rule({**definition, "active": True}), user=users["marketer"])
    program, _ = Program.objects.get_or_create(
        name=PROGRAM_NAME,
        defaults={
            "description": "Rabat rośnie z liczbą zamówień (wynik tagu PURCHASE).",
            "metric": {"type": "tag_score", "tag": "PURCHASE"},
            "created_at": created,
        },
    )
    for tier_name, minimum, discount in TIERS:
        Tier.objects.get_or_create(
            program=program, name=tier_name, defaults={"min": minimum, "benefits": {"discount_percent": discount}}
        )
    return {"funnel": funnel, "program": program, "users": users}


# --- The generator --------------------------------------------------------------------------------
def anchor_time(now: datetime | None = None) -> datetime:
    """Generated times count back from the start of the current hour (UTC)."""
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


def generate(
    *,
    contacts: int,
    demo: bool = False,
    bulk: bool | None = None,
    echo: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> GenerationReport:
    """Generate the shop for ``contacts`` contacts into an EMPTY contacts table, in one transaction,
    then fill the saved segments' memberships in a second one.

    The demo and the benchmark get the same shop (``demo`` says which one asks); ``bulk``
    (default: ≥ 10,000 contacts) rebuilds indexes after the load. ``now`` (default: the clock)
    anchors the generated times and is when the saved segments are evaluated. Returns timings and
    row counts.
    """
    if contacts < 1:
        raise ValueError("contacts must be at least 1")
    if Contact.objects.exists():
        raise ValueError("the contacts table is not empty: generate into an empty database (seed_demo --reset)")
    bulk = contacts >= 10_000 if bulk is None else bulk
    anchor = anchor_time(now)
    report = GenerationReport(contacts=contacts)
    started = time.perf_counter()
    with transaction.atomic():
        ref = _reference_data(anchor)
        with connection.cursor() as cursor:
            run = _Runner(cursor, report, echo)
            # rows go in children-first (events before their contacts): check FKs at commit
            run.run("functions", "SET CONSTRAINTS ALL DEFERRED")
            _functions(run)
            run.run("partitions", "SELECT mh_ensure_event_partitions(%s::timestamptz - interval '13 months', %s::timestamptz)", [anchor, anchor])
            if bulk:
                with _without_indexes(run, BULK_TABLES):
                    _generate_rows(run, contacts=contacts, anchor=anchor, ref=ref)
            else:
                _generate_rows(run, contacts=contacts, anchor=anchor, ref=ref)
            _set_sequences(run)
            run.run("functions", "DROP TABLE IF EXISTS " + ", ".join(f"pg_temp.{t}" for t in TEMP_TABLES))
        # the hot-leads growth counters, derived by the leads area's own set-based function
        score_trend_refresh(now=anchor)
        segment_ids = _segments_save(author=ref["users"]["marketer"], now=now or timezone.now())
    # The memberships are evaluated on the committed, vacuumed and analysed shop (statistics for
    # the planner, the visibility map for index-only scans). Not the membership table: analysed
    # while empty, it makes the refresh's anti-join probe it with a nested loop that rescans the
    # rows the same statement inserts (quadratic: 128 s instead of 0.3 s for 75,000 members at 100k).
    with _timed(report, "vacuum analyze", echo):
        vacuum_analyze(GENERATED_TABLES)
    with _timed(report, "segment memberships", echo):
        _segments_fill(segment_ids, now=now)
    with _timed(report, "vacuum analyze", echo):
        vacuum_analyze(MEMBERSHIP_TABLES)
    report.seconds = time.perf_counter() - started
    report.rows = row_counts()
    return report


@contextmanager
def _timed(report: GenerationReport, step: str, echo: Callable[[str], None] | None):
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    report.steps[step] = report.steps.get(step, 0.0) + elapsed
    if echo and elapsed > 1:
        echo(f"  {step}: {elapsed:.1f}s")


def vacuum_analyze(tables: list[str] | None = None) -> None:
    """VACUUM (for index-only scans: the visibility map) and ANALYZE ``tables`` (default: every
    table the generator writes); inside a transaction only ANALYZE (VACUUM needs autocommit)."""
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
    with connection.cursor() as cursor:
        for table in tables or GENERATED_TABLES + MEMBERSHIP_TABLES:
            cursor.execute(f"{command} {table}")


def row_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in BULK_TABLES + ["contacts_tag", "contacts_note", "leads_leadstatuschange", "automation_rule",
                                    "segments_segment", "segments_segmentmember"]:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
        return counts


def _functions(run: _Runner) -> None:
    # Uniform [0, 1) from a row number and a salt; inlined by the planner (IMMUTABLE SQL).
    run.run(
        "functions",
        """
        CREATE OR REPLACE FUNCTION pg_temp.mh_u(x bigint, salt bigint) RETURNS float8
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT (hashint8extended(x, salt) & 4294967295)::float8 / 4294967296.0 $$;
        -- A Zipf-like pick in 1..n: P(k) = ln((k+1)/k) / ln(n+1), about 1/k.
        CREATE OR REPLACE FUNCTION pg_temp.mh_zipf(u float8, n integer) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT least(n, greatest(1, floor(exp(u * ln(n + 1)))::int)) $$;
        """,
    )


def _set_sequences(run: _Runner) -> None:
    for table in ["contacts_contact", "leads_scorechange", "contacts_consentchange", "leads_stagetransition",
                  "contacts_tagscorechange", "contacts_note", "leads_leadstatuschange"]:
        run.run(
            "sequences",
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce((SELECT max(id) FROM {table}), 0) + 1, false)",
        )
    run.run(
        "sequences",
        "SELECT setval('automation_event_id_seq', coalesce((SELECT max(id) FROM automation_event), 0) + 1, false)",
    )


def _generate_rows(run: _Runner, *, contacts: int, anchor: datetime, ref: dict[str, Any]) -> None:
    # ON COMMIT DROP does not fire when the caller's transaction goes on (tests): drop them first.
    run.run("functions", "DROP TABLE IF EXISTS " + ", ".join(f"pg_temp.{t}" for t in TEMP_TABLES))
    lists = _name_lists()
    p = {
        "n": contacts,
        "anchor": anchor,
        "first_f": lists["first_f"],
        "first_m": lists["first_m"],
        "last_f": lists["last_f"],
        "last_m": lists["last_m"],
        "cities": lists["cities"],
        "fcountry": [c for c, _ in FOREIGN_CITIES],
        "fcity": [c for _, c in FOREIGN_CITIES],
        "domains": EMAIL_DOMAINS,
        "sources": SOURCES,
        "sizes": SIZES,
        "ncat": len(CATEGORIES),
        "cat": [c[0] for c in CATEGORIES],
        "noun": [c[1] for c in CATEGORIES],
        "slug": [c[2] for c in CATEGORIES],
        "plo": [float(c[3]) for c in CATEGORIES],
        "phi": [float(c[4]) for c in CATEGORIES],
        "lines": PRODUCT_LINES,
        "brands": BRANDS,
        "campaigns": CAMPAIGNS,
        "forms": FORMS,
        "customs": CUSTOM_EVENTS,
        "diamonds": DIAMONDS,
    }

    # 1. Per-contact parameters (a temp table, one row per contact).
    run.run(
        "contacts",
        """
        CREATE TEMP TABLE mh_gen_contact ON COMMIT DROP AS
        SELECT g.*,
               least(g.lo_raw, g.created_days * 0.9) AS lo,
               least(365.0, g.created_days::float8) AS hi,
               sum(g.n_events) OVER (ORDER BY g.id) - g.n_events AS first_event
        FROM (
            SELECT i::bigint AS id,
                   pg_temp.mh_u(i, 1) < 0.72 AS female,
                   CASE WHEN pg_temp.mh_u(i, 2) < 0.05 THEN 0
                        ELSE least(150, 1 + floor(-19.0 * ln(1.0 - pg_temp.mh_u(i, 3))))::int END AS n_events,
                   1 + floor(1100 * pg_temp.mh_u(i, 4))::int AS created_days,
                   power(pg_temp.mh_u(i, 5), 2.5) * 365.0 AS lo_raw,
                   pg_temp.mh_zipf(pg_temp.mh_u(i, 6), %(ncat)s) AS fav1,
                   pg_temp.mh_zipf(pg_temp.mh_u(i, 7), %(ncat)s) AS fav2,
                   power(pg_temp.mh_u(i, 8), 3) AS buyer
            FROM generate_series(1, %(n)s) AS i
        ) g
        """,
        p,
    )
    run.run("contacts", "ALTER TABLE mh_gen_contact ADD PRIMARY KEY (id)")

    # 2. Events: ~20 per contact, spread between the contact's last activity (lo days ago) and
    #    min(365 days, signup). The first event of each contact is the last activity itself.
    ev_sql, ev_defaults = _insert_select(
        Event,
        {
            "id": "s.eid", "event_id": "'seed-' || s.eid", "contact_id": "s.cid", "type": "s.type",
            "occurred_at": "s.at", "received_at": "s.at + interval '2 seconds'",
            "properties": """CASE s.type
                WHEN 'purchase' THEN jsonb_build_object('value', s.price * s.items, 'currency', 'PLN',
                    'order_id', 'ZAM-' || s.eid, 'items', s.items, 'category', %(cat)s[s.cat],
                    'product_id', s.product_id, 'product_name', s.product_name, 'brand', s.brand, 'price', s.price)
                WHEN 'product_view' THEN jsonb_build_object('category', %(cat)s[s.cat], 'product_id', s.product_id,
                    'product_name', s.product_name, 'brand', s.brand, 'price', s.price, 'currency', 'PLN',
                    'url', '/p/' || s.product_id)
                WHEN 'add_to_cart' THEN jsonb_build_object('category', %(cat)s[s.cat], 'product_id', s.product_id,
                    'product_name', s.product_name, 'brand', s.brand, 'price', s.price, 'currency', 'PLN')
                WHEN 'cart_abandon' THEN jsonb_build_object('category', %(cat)s[s.cat], 'product_id', s.product_id,
                    'value', s.price * s.items, 'currency', 'PLN', 'items', s.items)
                WHEN 'page_view' THEN jsonb_build_object('url', CASE
                    WHEN s.u2 < 0.02 OR (s.u2 < 0.25 AND %(diamonds)s IN (s.fav1, s.fav2))
                        THEN CASE WHEN s.u3 < 0.6 THEN '/diamenty' ELSE '/diamenty/pierscionki-zareczynowe' END
                    WHEN s.u2 < 0.30 THEN '/'
                    WHEN s.u2 < 0.55 THEN '/kategoria/' || %(slug)s[s.fav1]
                    WHEN s.u2 < 0.65 THEN '/nowosci'
                    WHEN s.u2 < 0.73 THEN '/wyprzedaz'
                    WHEN s.u2 < 0.80 THEN '/blog/trendy-' || %(slug)s[s.cat]
                    ELSE '/kategoria/' || %(slug)s[s.cat] END)
                WHEN 'email_open' THEN jsonb_build_object('campaign', %(campaigns)s[1 + floor(s.u2 * 12)::int])
                WHEN 'email_click' THEN jsonb_build_object('campaign', %(campaigns)s[1 + floor(s.u2 * 12)::int],
                    'url', '/kategoria/' || %(slug)s[s.cat])
                WHEN 'form_submit' THEN jsonb_build_object('name', %(forms)s[1 + floor(s.u2 * 5)::int])
                WHEN 'newsletter_signup' THEN jsonb_build_object('source', CASE WHEN s.u2 < 0.6 THEN 'stopka' ELSE 'pop-up' END)
                ELSE jsonb_build_object('name', %(customs)s[1 + floor(s.u2 * 5)::int])
            END""",
            "value": "CASE WHEN s.type = 'purchase' THEN s.price * s.items END",
        },
        """
        FROM (
            SELECT t.*,
                   'P' || (t.cat * 1000 + t.pidx) AS product_id,
                   %(noun)s[t.cat] || ' ' || %(lines)s[1 + t.pidx %% 20] AS product_name,
                   %(brands)s[1 + (t.cat * 7 + t.pidx) %% 12] AS brand,
                   (round((%(plo)s[t.cat] + (%(phi)s[t.cat] - %(plo)s[t.cat]) * pg_temp.mh_u(t.cat * 1000 + t.pidx, 18)) / 10) * 10 - 0.01)::numeric(12, 2) AS price,
                   CASE
                       WHEN t.u1 < t.pbuy THEN 'purchase'
                       WHEN t.u1 < t.pbuy + 0.30 THEN 'product_view'
                       WHEN t.u1 < t.pbuy + 0.36 THEN 'add_to_cart'
                       WHEN t.u1 < t.pbuy + 0.39 THEN 'cart_abandon'
                       WHEN t.u1 < t.pbuy + 0.61 THEN 'email_open'
                       WHEN t.u1 < t.pbuy + 0.66 THEN 'email_click'
                       WHEN t.u1 < t.pbuy + 0.68 THEN 'form_submit'
                       WHEN t.u1 < t.pbuy + 0.69 THEN 'newsletter_signup'
                       WHEN t.u1 < t.pbuy + 0.71 THEN 'custom'
                       ELSE 'page_view'
                   END AS type
            FROM (
                SELECT c.first_event + k AS eid, c.id AS cid, c.fav1, c.fav2,
                       0.01 + 0.30 * c.buyer AS pbuy,
                       pg_temp.mh_u(c.first_event + k, 11) AS u1,
                       pg_temp.mh_u(c.first_event + k, 16) AS u2,
                       pg_temp.mh_u(c.first_event + k, 17) AS u3,
                       1 + floor(3 * power(pg_temp.mh_u(c.first_event + k, 19), 3))::int AS items,
                       %(anchor)s::timestamptz - (CASE WHEN k = 1 THEN c.lo
                            ELSE c.lo + (c.hi - c.lo) * pg_temp.mh_u(c.first_event + k, 12) END) * interval '1 day' AS at,
                       CASE WHEN pg_temp.mh_u(c.first_event + k, 13) < 0.55 THEN c.fav1
                            WHEN pg_temp.mh_u(c.first_event + k, 13) < 0.80 THEN c.fav2
                            ELSE pg_temp.mh_zipf(pg_temp.mh_u(c.first_event + k, 14), %(ncat)s) END AS cat,
                       floor(60 * power(pg_temp.mh_u(c.first_event + k, 15), 2))::int AS pidx
                FROM mh_gen_contact c, generate_series(1, c.n_events) AS k
                OFFSET 0
            ) t
        ) s
        """,
    )
    run.run("events", _positional(ev_sql, len(ev_defaults)), _with_defaults(ev_defaults, p))
    rc_sql, rc_defaults = _insert_select(
        EventReceipt,
        {
            "event_id": "e.event_id", "event_pk": "e.id", "occurred_at": "e.occurred_at", "contact_id": "e.contact_id",
            "received_at": "e.received_at",
        },
        "FROM automation_event e",
    )
    run.run("receipts", rc_sql, rc_defaults)

    # 3. The rules, applied to the events with the app's own condition compiler.
    funnel = ref["funnel"]
    stage_positions = {(funnel.name.lower(), stage.name.lower()): stage.position for stage in funnel.stages.all()}
    _apply_rules(run, stage_positions=stage_positions)

    # 4. The long tail of hand-assigned / imported tags: ~4 per contact, Zipf-popular, skewed scores.
    tail = long_tail_tags()
    run.run(
        "long-tail tags",
        """
        INSERT INTO mh_tag_delta (contact_id, tag_key, tag_name, delta, at, event_pk, rule_id, source)
        SELECT c.id, lower(%(tail)s[z]), %(tail)s[z],
               1 + floor(-2.2 * ln(1.0 - pg_temp.mh_u(c.id * 64 + k, 32)))::int,
               %(anchor)s::timestamptz - (c.created_days * pg_temp.mh_u(c.id * 64 + k, 33)) * interval '1 day',
               NULL, NULL, CASE WHEN pg_temp.mh_u(c.id * 64 + k, 34) < 0.5 THEN 'import' ELSE 'manual' END
        FROM mh_gen_contact c,
             generate_series(1, least(40, floor(-6.5 * ln(1.0 - pg_temp.mh_u(c.id, 30)))::int)) AS k,
             LATERAL (SELECT pg_temp.mh_zipf(pg_temp.mh_u(c.id * 64 + k, 31), %(ntail)s) AS z) zz
        """,
        {"tail": tail, "ntail": len(tail), "anchor": anchor},
    )
    # Tags named by rule templates that do not exist yet are created (as the rules engine would).
    tag_sql, tag_defaults = _insert_select(
        Tag,
        {"name": "d.tag_name", "key": "d.tag_key", "colour": "'#64748b'", "created_at": "d.at"},
        """FROM (SELECT tag_key, min(tag_name) AS tag_name, min(at) AS at FROM mh_tag_delta GROUP BY tag_key) d
           ON CONFLICT (key) DO NOTHING""",
    )
    run.run("tags", tag_sql, tag_defaults)
    ct_sql, ct_defaults = _insert_select(
        ContactTag,
        {"contact_id": "d.contact_id", "tag_id": "t.id", "score": "sum(d.delta)", "first_assigned_at": "min(d.at)",
         "last_assigned_at": "max(d.at)"},
        """FROM mh_tag_delta d JOIN contacts_tag t ON t.key = d.tag_key
           GROUP BY d.contact_id, t.id HAVING sum(d.delta) > 0""",
    )
    run.run("contact tags", ct_sql, ct_defaults)
    # Every change in the history with the score it left. ROWS, not the default RANGE: two changes
    # at the same moment each leave their own running sum.
    change_order = "d.at, d.event_pk, d.rule_id, d.delta, d.source"
    ch_sql, ch_defaults = _insert_select(
        TagScoreChange,
        {"contact_id": "d.contact_id", "tag_id": "t.id", "delta": "d.delta",
         "score_after": f"sum(d.delta) OVER (PARTITION BY d.contact_id, t.id ORDER BY {change_order} ROWS UNBOUNDED PRECEDING)",
         "source": "d.source", "rule_id": "d.rule_id", "event_pk": "d.event_pk", "created_at": "d.at"},
        f"FROM mh_tag_delta d JOIN contacts_tag t ON t.key = d.tag_key ORDER BY d.contact_id, t.id, {change_order}",
    )
    run.run("tag history", ch_sql, ch_defaults)

    # 5. Contacts, with score = sum of the ledger and last_activity_at = the last event; the leads
    #    sales works on: owners for ~60% of hot and ~12% of warm leads, claimed up to three months
    #    ago, each status reached through the ones before it (new → contacted → qualified → won, or
    #    → lost with a reason), the changes spread between the claim and now.
    temperature = _temperature_thresholds(run)
    p["warm"], p["hot"] = temperature
    users = ref["users"]
    p.update(sales=users["sales"].pk, sales2=users["sales2"].pk, marketer=users["marketer"].pk, reasons=LOST_REASONS)
    run.run(
        "leads",
        """
        CREATE TEMP TABLE mh_lead ON COMMIT DROP AS
        SELECT l.*, CASE l.status WHEN 'contacted' THEN ARRAY['contacted']
                                  WHEN 'qualified' THEN ARRAY['contacted', 'qualified']
                                  WHEN 'won' THEN ARRAY['contacted', 'qualified', 'won']
                                  WHEN 'lost' THEN ARRAY['contacted', 'lost']
                                  ELSE ARRAY[]::text[] END AS path
        FROM (
            SELECT c.id AS contact_id,
                   CASE WHEN pg_temp.mh_u(c.id, 81) < 0.55 THEN %(sales)s ELSE %(sales2)s END AS owner_id,
                   CASE WHEN pg_temp.mh_u(c.id, 82) < 0.12 THEN 'new'
                        WHEN pg_temp.mh_u(c.id, 82) < 0.45 THEN 'contacted'
                        WHEN pg_temp.mh_u(c.id, 82) < 0.70 THEN 'qualified'
                        WHEN pg_temp.mh_u(c.id, 82) < 0.88 THEN 'won'
                        ELSE 'lost' END AS status,
                   %(anchor)s::timestamptz
                       - least(c.created_days * 0.9, 2 + 88 * power(pg_temp.mh_u(c.id, 83), 1.5)) * interval '1 day'
                       AS claimed_at,
                   %(reasons)s[1 + floor(pg_temp.mh_u(c.id, 84) * cardinality(%(reasons)s))::int] AS lost_reason
            FROM mh_gen_contact c
            JOIN mh_score sc ON sc.contact_id = c.id
            WHERE (sc.score >= %(hot)s AND pg_temp.mh_u(c.id, 80) < 0.60)
               OR (sc.score >= %(warm)s AND sc.score < %(hot)s AND pg_temp.mh_u(c.id, 80) < 0.12)
        ) l
        """,
        p,
    )
    run.run("leads", "ALTER TABLE mh_lead ADD PRIMARY KEY (contact_id)")
    # the moment of the lead's j-th status change (of n): evenly between the claim and now
    change_at = "ld.claimed_at + (%(anchor)s::timestamptz - ld.claimed_at) * ({j}::float8 / (cardinality(ld.path) + 1))"
    co_sql, co_defaults = _insert_select(
        Contact,
        {
            "id": "c.id",
            "email": """lower(translate(fn.first || '.' || fn.last, 'ąćęłńóśźżĄĆĘŁŃÓŚŹŻ ', 'acelnoszzACELNOSZZ-'))
                        || c.id || '@' || %(domains)s[1 + (c.id %% 4)::int]""",
            "first_name": "fn.first", "last_name": "fn.last",
            "phone": """CASE WHEN pg_temp.mh_u(c.id, 40) < 0.8 THEN
                '+48 ' || (500 + floor(pg_temp.mh_u(c.id, 41) * 300))::int || ' '
                || lpad(floor(pg_temp.mh_u(c.id, 42) * 1000)::int::text, 3, '0') || ' '
                || lpad(floor(pg_temp.mh_u(c.id, 43) * 1000)::int::text, 3, '0') ELSE '' END""",
            "country": "geo.country", "city": "geo.city",
            "birth_date": """CASE WHEN pg_temp.mh_u(c.id, 44) < 0.88 THEN
                (%(anchor)s::date - ((18 + 52 * power(pg_temp.mh_u(c.id, 45), 1.7)) * 365.25)::int) END""",
            "properties": """jsonb_build_object('source', %(sources)s[1 + floor(pg_temp.mh_u(c.id, 46) * 6)::int],
                'preferred_size', %(sizes)s[1 + floor(pg_temp.mh_u(c.id, 47) * 5)::int],
                'loyalty_card', pg_temp.mh_u(c.id, 48) < 0.3)""",
            "score": "coalesce(sc.score, 0)",
            "owner_id": "ld.owner_id",
            "lead_status": "coalesce(ld.status, 'new')",
            "lead_status_reason": "CASE WHEN ld.status = 'lost' THEN ld.lost_reason ELSE '' END",
            "lead_status_changed_at": f"CASE WHEN cardinality(ld.path) > 0 THEN {change_at.format(j='cardinality(ld.path)')} END",
            "last_activity_at": "CASE WHEN c.n_events > 0 THEN %(anchor)s::timestamptz - c.lo * interval '1 day' END",
            "created_at": "%(anchor)s::timestamptz - c.created_days * interval '1 day'",
            "updated_at": f"""greatest(%(anchor)s::timestamptz - least(c.lo, c.created_days) * interval '1 day',
                                       CASE WHEN cardinality(ld.path) > 0 THEN {change_at.format(j='cardinality(ld.path)')} END)""",
        },
        """
        FROM mh_gen_contact c
        LEFT JOIN mh_score sc ON sc.contact_id = c.id
        LEFT JOIN mh_lead ld ON ld.contact_id = c.id
        CROSS JOIN LATERAL (SELECT
            CASE WHEN c.female THEN %(first_f)s[1 + floor(pg_temp.mh_u(c.id, 50) * cardinality(%(first_f)s))::int]
                 ELSE %(first_m)s[1 + floor(pg_temp.mh_u(c.id, 50) * cardinality(%(first_m)s))::int] END AS first,
            CASE WHEN c.female THEN %(last_f)s[pg_temp.mh_zipf(pg_temp.mh_u(c.id, 51), cardinality(%(last_f)s))]
                 ELSE %(last_m)s[pg_temp.mh_zipf(pg_temp.mh_u(c.id, 51), cardinality(%(last_m)s))] END AS last) fn
        CROSS JOIN LATERAL (SELECT
            CASE WHEN pg_temp.mh_u(c.id, 52) < 0.86 THEN 'PL'
                 ELSE %(fcountry)s[1 + floor(pg_temp.mh_u(c.id, 53) * cardinality(%(fcountry)s))::int] END AS country,
            CASE WHEN pg_temp.mh_u(c.id, 52) < 0.86 THEN %(cities)s[pg_temp.mh_zipf(pg_temp.mh_u(c.id, 54), cardinality(%(cities)s))]
                 ELSE %(fcity)s[1 + floor(pg_temp.mh_u(c.id, 53) * cardinality(%(fcity)s))::int] END AS city) geo
        ORDER BY c.id
        """,
    )
    run.run("contacts", _positional(co_sql, len(co_defaults)), _with_defaults(co_defaults, p))
    ls_sql, ls_defaults = _insert_select(
        LeadStatusChange,
        {"contact_id": "ld.contact_id", "from_status": "CASE WHEN j = 1 THEN 'new' ELSE ld.path[j - 1] END",
         "to_status": "ld.path[j]", "reason": "CASE WHEN ld.path[j] = 'lost' THEN ld.lost_reason ELSE '' END",
         "user_id": "ld.owner_id", "created_at": change_at.format(j="j")},
        "FROM mh_lead ld, generate_series(1, cardinality(ld.path)) AS j ORDER BY ld.contact_id, j",
    )
    run.run("leads", _positional(ls_sql, len(ls_defaults)), _with_defaults(ls_defaults, p))
    # Notes: 1–3 by the owner on a worked lead (between the claim and its last change), and 1–3 by
    # sales or marketing on ~2% of the other contacts (service matters, any time since signup).
    note_sql, note_defaults = _insert_select(
        Note,
        {"contact_id": "n.contact_id", "author_id": "n.author_id",
         "text": """replace(replace(%(notes)s[1 + floor(pg_temp.mh_u(n.contact_id * 8 + k, 87) * cardinality(%(notes)s))::int],
                        '{tag}', %(cat)s[c.fav1]), '{size}', %(sizes)s[1 + floor(pg_temp.mh_u(c.id, 47) * 5)::int])""",
         "created_at": "n.since + (n.until - n.since) * pg_temp.mh_u(n.contact_id * 8 + k, 89)",
         "updated_at": "n.since + (n.until - n.since) * pg_temp.mh_u(n.contact_id * 8 + k, 89)"},
        f"""
        FROM (
            SELECT ld.contact_id, ld.owner_id AS author_id, ld.claimed_at AS since,
                   {change_at.format(j="cardinality(ld.path)")} AS until
            FROM mh_lead ld WHERE cardinality(ld.path) > 0
            UNION ALL
            SELECT g.id, CASE floor(pg_temp.mh_u(g.id, 86) * 3)::int WHEN 0 THEN %(sales)s WHEN 1 THEN %(sales2)s
                              ELSE %(marketer)s END,
                   %(anchor)s::timestamptz - g.created_days * interval '1 day', %(anchor)s::timestamptz
            FROM mh_gen_contact g
            WHERE pg_temp.mh_u(g.id, 85) < 0.02 AND NOT EXISTS (SELECT 1 FROM mh_lead x WHERE x.contact_id = g.id)
        ) n
        JOIN mh_gen_contact c ON c.id = n.contact_id,
        generate_series(1, 1 + floor(3 * pg_temp.mh_u(n.contact_id, 88))::int) AS k
        ORDER BY n.contact_id, k
        """,
    )
    p["notes"] = NOTE_TEXTS
    run.run("notes", _positional(note_sql, len(note_defaults)), _with_defaults(note_defaults, p))

    # 6. Consents (email for 75%, sms for 35%) with their history: given at signup, some withdrawn later.
    for channel, salt, rate, source in (("email", 60, 0.75, "formularz rejestracji"), ("sms", 70, 0.35, "checkout")):
        q = {"channel": channel, "salt": salt, "rate": rate, "source": source, "anchor": anchor}
        cc_sql, cc_defaults = _insert_select(
            ConsentChange,
            {"contact_id": "c.id", "channel": "%(channel)s", "granted": "v.granted", "source": "v.source",
             "created_at": "v.at"},
            """
            FROM mh_gen_contact c
            CROSS JOIN LATERAL (VALUES
                (true, %(source)s, %(anchor)s::timestamptz - c.created_days * interval '1 day', 1),
                (false, 'link w stopce e-maila',
                 %(anchor)s::timestamptz - (c.created_days * pg_temp.mh_u(c.id, %(salt)s + 2)) * interval '1 day', 2)
            ) AS v(granted, source, at, step)
            WHERE pg_temp.mh_u(c.id, %(salt)s) < %(rate)s + 0.08
              AND (v.step = 1 OR pg_temp.mh_u(c.id, %(salt)s) >= %(rate)s)
            """,
        )
        run.run("consents", _positional(cc_sql, len(cc_defaults)), _with_defaults(cc_defaults, q))
        cs_sql, cs_defaults = _insert_select(
            Consent,
            {"contact_id": "x.contact_id", "channel": "x.channel", "granted": "x.granted", "source": "x.source",
             "updated_at": "x.created_at"},
            """FROM (SELECT DISTINCT ON (contact_id) contact_id, channel, granted, source, created_at
                     FROM contacts_consentchange WHERE channel = %(channel)s
                     ORDER BY contact_id, created_at DESC) x""",
        )
        run.run("consents", _positional(cs_sql, len(cs_defaults)), _with_defaults(cs_defaults, q))

    # 7. The funnel. Until a stage rule first fires for a contact, it climbs by activity and
    #    temperature, moved through the API: New at signup, Engaged if active in 90 days, MQL if
    #    warm, SQL if hot, evenly between signup and the last activity. From the first firing on,
    #    the stage rules move it (each firing that changes the stage is a transition), as the
    #    engine would have when those events came in.
    stage_ids = list(funnel.stages.order_by("position").values_list("id", flat=True))
    q = {"funnel": funnel.id, "stages": stage_ids, "anchor": anchor, "warm": temperature[0], "hot": temperature[1]}
    run.run(
        "funnel",
        """
        CREATE TEMP TABLE mh_stage ON COMMIT DROP AS
        SELECT c.id AS contact_id,
               CASE WHEN coalesce(sc.score, 0) >= %(hot)s THEN 4
                    WHEN coalesce(sc.score, 0) >= %(warm)s THEN 3
                    WHEN c.n_events > 0 AND c.lo <= 90 THEN 2
                    ELSE 1 END AS pos,
               %(anchor)s::timestamptz - c.created_days * interval '1 day' AS since,
               %(anchor)s::timestamptz - least(c.lo, c.created_days) * interval '1 day' AS until
        FROM mh_gen_contact c
        LEFT JOIN mh_score sc ON sc.contact_id = c.id
        """,
        q,
    )
    # Every step, then only those that change the stage (ordered by time; on a tie the API move
    # first, rule firings by event).
    run.run(
        "funnel",
        """
        CREATE TEMP TABLE mh_stage_move ON COMMIT DROP AS
        SELECT * FROM (
            SELECT t.*, lag(t.stage_pos) OVER (PARTITION BY t.contact_id ORDER BY t.at, t.src, t.ord) AS from_pos
            FROM (
                SELECT s.contact_id, k AS stage_pos, x.at, 0 AS src, k::bigint AS ord,
                       NULL::bigint AS rule_id, NULL::bigint AS event_pk
                FROM mh_stage s
                LEFT JOIN (SELECT contact_id, min(at) AS first_at FROM mh_stage_hit GROUP BY contact_id) h
                     ON h.contact_id = s.contact_id
                CROSS JOIN generate_series(1, s.pos) AS k
                CROSS JOIN LATERAL (SELECT s.since + (s.until - s.since) * ((k - 1)::float8 / s.pos) AS at) x
                WHERE k = 1 OR h.first_at IS NULL OR x.at < h.first_at
                UNION ALL
                SELECT contact_id, stage_pos, at, 1, event_pk, rule_id, event_pk FROM mh_stage_hit
            ) t
        ) m
        WHERE m.from_pos IS DISTINCT FROM m.stage_pos
        """,
    )
    st_sql, st_defaults = _insert_select(
        StageTransition,
        {"contact_id": "m.contact_id", "funnel_id": "%(funnel)s",
         "from_stage_id": "%(stages)s[m.from_pos]",
         "to_stage_id": "%(stages)s[m.stage_pos]",
         "cause": "CASE WHEN m.rule_id IS NULL THEN 'api' ELSE 'rule' END",
         "rule_id": "m.rule_id", "event_pk": "m.event_pk",
         "created_at": "m.at", "left_at": "m.left_at", "previous_entry_at": "m.previous_entry_at"},
        # each stay's end (the contact's next move) and the stage's previous entry, as the app's
        # writer stores them (``leads.funnels``), in the order the rows get their ids
        """FROM (SELECT mv.*,
                       lead(mv.at) OVER (PARTITION BY mv.contact_id ORDER BY mv.at, mv.src, mv.ord) AS left_at,
                       lag(mv.at) OVER (PARTITION BY mv.contact_id, mv.stage_pos ORDER BY mv.at, mv.src, mv.ord)
                           AS previous_entry_at
                FROM mh_stage_move mv) m
           ORDER BY m.contact_id, m.at, m.src, m.ord""",
    )
    run.run("funnel", _positional(st_sql, len(st_defaults)), _with_defaults(st_defaults, q))
    cst_sql, cst_defaults = _insert_select(
        ContactStage,
        {"contact_id": "m.contact_id", "funnel_id": "%(funnel)s", "stage_id": "%(stages)s[m.stage_pos]",
         "entered_at": "m.at"},
        """FROM (SELECT DISTINCT ON (contact_id) * FROM mh_stage_move
                 ORDER BY contact_id, at DESC, src DESC, ord DESC) m""",
    )
    run.run("funnel", _positional(cst_sql, len(cst_defaults)), _with_defaults(cst_defaults, q))

    # 8. Loyalty tiers: the tier with the greatest min not above the PURCHASE tag score.
    program = ref["program"]
    ctier_sql, ctier_defaults = _insert_select(
        ContactTier,
        {"program_id": "%(program)s", "contact_id": "c.id", "tier_id": "tr.id",
         "metric_value": "coalesce(ct.score, 0)", "since": "%(anchor)s::timestamptz", "version": "1"},
        """
        FROM contacts_contact c
        LEFT JOIN contacts_contacttag ct ON ct.contact_id = c.id
             AND ct.tag_id = (SELECT id FROM contacts_tag WHERE key = 'purchase')
        LEFT JOIN LATERAL (SELECT t.id FROM loyalty_tier t WHERE t.program_id = %(program)s
                           AND t.min <= coalesce(ct.score, 0) ORDER BY t.min DESC LIMIT 1) tr ON true
        """,
    )
    run.run("loyalty", _positional(ctier_sql, len(ctier_defaults)),
            _with_defaults(ctier_defaults, {"program": program.id, "anchor": anchor}))


def _positional(sql: str, n_defaults: int) -> str:
    """Turn the ``%s`` placeholders of the defaults into named ones so one dict carries all."""
    for i in range(n_defaults):
        sql = sql.replace("%s", f"%(_d{i})s", 1)
    return sql


def _with_defaults(defaults: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    merged = dict(params)
    merged.update({f"_d{i}": value for i, value in enumerate(defaults)})
    return merged


def _temperature_thresholds(run: _Runner) -> tuple[int, int]:
    """Warm/hot at the 75th/95th percentile of positive scores, rounded to tens (min 50/100 apart)."""
    warm, hot = run.value(
        """SELECT ARRAY[coalesce(percentile_disc(0.75) WITHIN GROUP (ORDER BY score), 50),
                        coalesce(percentile_disc(0.95) WITHIN GROUP (ORDER BY score), 100)]
           FROM mh_score WHERE score > 0"""
    ) or (50, 100)
    warm = max(10, int(round(warm / 10.0)) * 10)
    hot = max(warm + 10, int(round(hot / 10.0)) * 10)
    settings_row = TemperatureSettings.current()
    settings_row.warm, settings_row.hot = warm, hot
    settings_row.save(update_fields=["warm", "hot"])
    return warm, hot


# --- Rules → ledger, tags, applications -----------------------------------------------------------
def _template_sql(template: str) -> tuple[str, list[str]]:
    """A tag template such as ``"{category}"`` or ``"Marka: {brand}"`` as SQL over ``e.properties``;
    NULL when a placeholder is empty (the action is skipped, as the engine does)."""
    parts, keys, pos = [], [], 0
    for match in re.finditer(r"\{([^{}]+)\}", template):
        if match.start() > pos:
            parts.append("'" + template[pos : match.start()].replace("'", "''") + "'")
        key = match.group(1).strip()
        keys.append(key)
        parts.append("(e.properties ->> '" + key.replace("'", "''") + "')")
        pos = match.end()
    if pos < len(template):
        parts.append("'" + template[pos:].replace("'", "''") + "'")
    if not keys:
        return "'" + template.replace("'", "''") + "'", []
    guard = " OR ".join(f"coalesce(e.properties ->> '{k.replace(chr(39), chr(39) * 2)}', '') = ''" for k in keys)
    body = "regexp_replace(btrim(" + " || ".join(parts) + "), '\\s+', ' ', 'g')"
    return f"CASE WHEN {guard} THEN NULL ELSE {body} END", keys


def _apply_rules(run: _Runner, *, stage_positions: dict[tuple[str, str], int]) -> None:
    """What the rules engine would have done with these events, set-based: for each active rule,
    the matching events (the first one per contact for once-per-contact rules), its guard rows,
    its points in the ledger (capped by max_points_per_contact), its tag deltas (``mh_tag_delta``)
    and its stage moves (``mh_stage_hit``, positions in the generated funnel)."""
    run.run(
        "rules",
        """
        CREATE TEMP TABLE mh_tag_delta (contact_id bigint, tag_key text, tag_name text, delta int,
            at timestamptz, event_pk bigint, rule_id bigint, source text) ON COMMIT DROP;
        CREATE TEMP TABLE mh_match (rule_id bigint, event_pk bigint, contact_id bigint, at timestamptz,
            tag_names text[]) ON COMMIT DROP;
        CREATE TEMP TABLE mh_stage_hit (contact_id bigint, at timestamptz, event_pk bigint, rule_id bigint,
            stage_pos int) ON COMMIT DROP;
        """,
    )
    rules = list(Rule.objects.filter(active=True).order_by("id"))
    for rule in rules:
        actions = rule.actions or []
        points = [int(a.get("points", 0)) for a in actions if a.get("type") == "add_score"]
        tag_actions = [a for a in actions if a.get("type") == "add_tag" and a.get("tag")]
        tag_exprs = [_template_sql(str(a["tag"]))[0] for a in tag_actions]
        where_sql, where_params = compile_conditions(rule.conditions or [], properties_sql="e.properties")
        names_sql = "ARRAY[" + ", ".join(tag_exprs) + "]::text[]" if tag_exprs else "ARRAY[]::text[]"
        select = f"""SELECT {rule.id}, e.id, e.contact_id, e.occurred_at, {names_sql}
                     FROM automation_event e WHERE e.type = %s AND {where_sql}"""
        if rule.once_per_contact:
            select = f"SELECT DISTINCT ON (m.contact_id) m.* FROM ({select}) m ORDER BY m.contact_id, m.occurred_at, m.id"
        run.run("rules", f"INSERT INTO mh_match {select}", [rule.event_type, *where_params])
        total = sum(points)
        cap = rule.max_points_per_contact
        # a capped rule stops firing once its points reach the cap (no guard row, no points after)
        matches = f"mh_match m WHERE m.rule_id = {rule.id}"
        if cap is not None and total > 0:
            matches = f"""(SELECT *, row_number() OVER (PARTITION BY contact_id ORDER BY at, event_pk) AS n
                           FROM mh_match WHERE rule_id = {rule.id}) m WHERE m.n * {total} <= {int(cap)}"""
        for action_points in points:
            sc_sql, sc_defaults = _insert_select(
                ScoreChange,
                {"contact_id": "m.contact_id", "delta": str(action_points), "rule_id": str(rule.id),
                 "event_pk": "m.event_pk", "reason": "%s", "created_at": "m.at"},
                f"FROM {matches}",
            )
            # the reason placeholder comes first in the SELECT list, before the defaults
            run.run("ledger", sc_sql, [rule.name[:200], *sc_defaults])
        if tag_actions:
            scores = [int(a.get("score", 1)) for a in tag_actions]
            run.run(
                "rule tags",
                f"""INSERT INTO mh_tag_delta (contact_id, tag_key, tag_name, delta, at, event_pk, rule_id, source)
                    SELECT m.contact_id, lower(x.name), x.name, x.score, m.at, m.event_pk, m.rule_id, 'rule'
                    FROM mh_match m, unnest(m.tag_names, %s::int[]) AS x(name, score)
                    WHERE m.rule_id = {rule.id} AND x.name IS NOT NULL AND x.name <> ''""",
                [scores],
            )
        ra_sql, ra_defaults = _insert_select(
            RuleApplication,
            {"rule_id": "m.rule_id", "event_pk": "m.event_pk", "contact_id": "m.contact_id",
             "points": str(total), "applied_at": "m.at + interval '3 seconds'",
             # the engine marks once-per-contact applications (a partial unique index guards them)
             **({"once": "true" if rule.once_per_contact else "false"} if _has_column(RuleApplication, "once") else {})},
            f"FROM {matches}",
        )
        run.run("rule applications", ra_sql, ra_defaults)
        # Moves to a stage of the generated funnel; of several set_stage actions the last wins, as
        # in the engine. A rule naming another funnel moves nobody here.
        stages = [a for a in actions if a.get("type") == "set_stage"]
        position = stage_positions.get((str(stages[-1]["funnel"]).strip().lower(),
                                        str(stages[-1]["stage"]).strip().lower())) if stages else None
        if position is not None:
            run.run(
                "rules",
                f"""INSERT INTO mh_stage_hit (contact_id, at, event_pk, rule_id, stage_pos)
                    SELECT m.contact_id, m.at, m.event_pk, m.rule_id, {int(position)} FROM {matches}""",
            )
        run.run("rules", f"DELETE FROM mh_match WHERE rule_id = {rule.id}")
    run.run(
        "ledger",
        """CREATE TEMP TABLE mh_score ON COMMIT DROP AS
           SELECT contact_id, sum(delta)::int AS score FROM leads_scorechange GROUP BY contact_id""",
    )
    run.run("ledger", "ALTER TABLE mh_score ADD PRIMARY KEY (contact_id)")


# --- Saved segments (20 rows, ORM; memberships by the segments' own set-based refresh) ------------
@dataclass(frozen=True)
class SavedSegment:
    name: str
    description: str
    # The API contract's condition tree; ``{"type": "segment", "segment_id": "<name>"}`` names a
    # segment listed before it (the id is filled in when it is saved).
    definition: dict[str, Any]
    for_sending: bool = False


def _tag_at_least(tag: str, value: int) -> dict[str, Any]:
    return {"type": "tag_score", "tag": tag, "op": "gte", "value": value}


def _in_segment(name: str) -> dict[str, Any]:
    return {"type": "segment", "segment_id": name}


EMAIL_CONSENT = {"type": "consent", "channel": "email", "value": True}
CUSTOMER_STAGE = {"type": "stage", "funnel": FUNNEL_NAME, "stage": "Customer"}

# What a shop's marketing and sales keep: broad audiences, rare high-value groups, campaign
# audiences nesting all/any/not and other segments. Referenced segments come first.
SEGMENTS: list[SavedSegment] = [
    SavedSegment("Zgoda na e-mail", "Wszyscy, do których wolno wysłać e-mail.", EMAIL_CONSENT),
    SavedSegment("Aktywni w ostatnich 90 dniach", "Jakakolwiek aktywność w ciągu ostatnich 90 dni.",
                 {"not": {"type": "inactive_days", "value": 90}}),
    SavedSegment("Uśpieni (ponad rok bez aktywności)", "Grupa negatywna: wykluczać z kampanii.",
                 {"all": [{"type": "inactive_days", "value": 365}]}),
    SavedSegment("Ciepłe leady", "Wynik między progiem ciepłym a gorącym: do dogrzania kampanią.",
                 {"type": "temperature", "value": "warm"}),
    SavedSegment("Gorące leady z Polski", "Gorące kontakty z Polski: dla działu sprzedaży.",
                 {"all": [{"type": "temperature", "value": "hot"},
                          {"type": "attribute", "name": "country", "op": "eq", "value": "PL"}]}),
    SavedSegment("Kolekcjonerzy diamentów", "Tag diamenty z wynikiem co najmniej 5.", _tag_at_least("diamenty", 5)),
    SavedSegment("Zamówienia za ponad 5 000 zł", "Suma wszystkich zamówień co najmniej 5 000 zł.",
                 {"type": "purchase_total", "op": "gte", "value": 5000}),
    SavedSegment("Fani kurtek ze zgodą na e-mail", "Do kampanii kurtkowej: tag kurtki ≥ 3 i zgoda na e-mail.",
                 {"all": [_tag_at_least("kurtki", 3), EMAIL_CONSENT]}),
    SavedSegment("Stali klienci z Warszawy", "Co najmniej 3 zamówienia, Warszawa.",
                 {"all": [_tag_at_least("PURCHASE", 3), {"type": "attribute", "name": "city", "op": "eq", "value": "Warszawa"}]}),
    SavedSegment("Zainteresowani diamentami", "Oglądali diamenty w ostatnich 30 dniach lub mają tag diamenty.",
                 {"any": [{"type": "event_count", "event_type": "page_view",
                           "where": [{"property": "url", "op": "contains", "value": "/diamenty"}],
                           "within_days": 30, "op": "gte", "value": 1},
                          _tag_at_least("diamenty", 2)]}),
    SavedSegment("Oglądają sukienki (30 dni)", "Co najmniej 3 wyświetlenia sukienek w ostatnich 30 dniach.",
                 {"type": "event_count", "event_type": "product_view",
                  "where": [{"property": "category", "op": "eq", "value": "sukienki"}],
                  "within_days": 30, "op": "gte", "value": 3}),
    SavedSegment("Użytkownicy aplikacji", "Co najmniej dwa otwarcia aplikacji mobilnej (zdarzenie własne app_open).",
                 {"type": "event_count", "event_type": "custom",
                  "where": [{"property": "name", "op": "eq", "value": "app_open"}], "op": "gte", "value": 2}),
    SavedSegment("Porzucone koszyki bez zakupu (30 dni)", "Porzucili koszyk w ostatnich 30 dniach i od tej pory nic nie kupili.",
                 {"all": [{"type": "event_count", "event_type": "cart_abandon", "within_days": 30, "op": "gte", "value": 1},
                          {"not": {"type": "event_count", "event_type": "purchase", "within_days": 30, "op": "gte",
                                   "value": 1}}]}),
    SavedSegment("Klub Stylu: Złoty", "Najwyższy poziom programu lojalnościowego.",
                 {"type": "tier", "program": PROGRAM_NAME, "tier": "Złoty"}),
    SavedSegment("Kupujący w wieku 25–40 lat z Polski", "Co najmniej jedno zamówienie, wiek 25–40, Polska.",
                 {"all": [{"type": "age", "op": "between", "value": [25, 40]},
                          {"type": "attribute", "name": "country", "op": "eq", "value": "PL"},
                          _tag_at_least("PURCHASE", 1)]}),
    SavedSegment("Klienci 60+", "Etap Customer w lejku, wiek co najmniej 60 lat.",
                 {"all": [CUSTOMER_STAGE, {"type": "age", "op": "gte", "value": 60}]}),
    SavedSegment("Klienci z Niemiec, Czech i Słowacji", "Do kampanii w językach sąsiadów.",
                 {"type": "attribute", "name": "country", "op": "in", "value": ["DE", "CZ", "SK"]}),
    SavedSegment("Do odzyskania: kupowali, od pół roku cisza", "Co najmniej 2 zamówienia, 180 dni bez aktywności, zgoda na e-mail.",
                 {"all": [_tag_at_least("PURCHASE", 2), {"type": "inactive_days", "value": 180},
                          _in_segment("Zgoda na e-mail")]}),
    SavedSegment("Biżuteria i elegancja: zaangażowani", "Biżuteria albo elegancki styl, wynik ≥ 100, aktywni i bez reklamacji.",
                 {"all": [{"any": [_tag_at_least("biżuteria złota", 2), _tag_at_least("biżuteria srebrna", 3),
                                   {"all": [{"type": "has_tag", "tag": "Styl: elegancki"}, _tag_at_least("sukienki", 2)]}]},
                          {"type": "score", "op": "gte", "value": 100},
                          {"not": {"any": [{"type": "inactive_days", "value": 180},
                                           {"type": "has_tag", "tag": "Reklamacja"}]}}]}),
    SavedSegment("Diamenty: kampania premium", "Zainteresowani diamentami, ciepli lub lepsi, bez uśpionych; do wysyłki.",
                 {"all": [_in_segment("Zainteresowani diamentami"),
                          {"any": [_in_segment("Ciepłe leady"), {"type": "temperature", "value": "hot"},
                                   {"type": "tier", "program": PROGRAM_NAME, "tier": "Złoty"}]},
                          {"not": _in_segment("Uśpieni (ponad rok bez aktywności)")}]},
                 for_sending=True),
]


def _with_segment_ids(node: Any, ids: dict[str, int]) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "segment" and isinstance(node.get("segment_id"), str):
            return {**node, "segment_id": ids[node["segment_id"]]}
        return {key: _with_segment_ids(value, ids) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_segment_ids(item, ids) for item in node]
    return node


def _segments_save(*, author, now: datetime) -> list[int]:
    """Save ``SEGMENTS``, validated as the builder validates them; returns their ids in order."""
    ids: dict[str, int] = {}
    for spec in SEGMENTS:
        definition = _with_segment_ids(spec.definition, ids)
        validate_definition(definition)
        segment, _ = Segment.objects.get_or_create(
            name=spec.name,
            defaults={"description": spec.description, "definition": definition, "for_sending": spec.for_sending,
                      "created_by": author, "created_at": now, "updated_at": now},
        )
        ids[spec.name] = segment.pk
    return list(ids.values())


def _segments_fill(segment_ids: list[int], *, now: datetime | None) -> None:
    """Fill the memberships with the app's own full refresh (one set-based statement per segment),
    in one transaction.

    The refresh tells the world of every member who entered (an outbox row each); the generated
    shop's past was told long ago, so those rows are dropped — left, webhook delivery would start
    by fanning out one message per membership (millions at a million contacts)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout'), coalesce(max(id), 0) FROM core_outboxmessage")
            timeout, outbox_before = cursor.fetchone()
        for segment_id in segment_ids:
            segment_refresh(segment_id, now=now)
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM core_outboxmessage WHERE id > %s AND type IN ('segment.entered', 'segment.exited') "
                "AND segment_id = ANY(%s::bigint[])",
                [outbox_before, segment_ids],
            )
            # the refresh bounds its statement with SET LOCAL, which outlives its savepoint
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])


def summary(report: GenerationReport) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)
