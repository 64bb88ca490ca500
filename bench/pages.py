"""The views part of the benchmark (``--only views``): every page a member of staff waits for,
measured as the browser asks for it, p95 **per URL**.

A *probe* is one thing a user waits for: a page (GET with its query string), a page together with
the htmx panels it loads by itself (the contact card: ``hx-get`` + ``hx-trigger="load"``, fetched
one after the other with ``HX-Request``, as one web process serves them; the sum is the figure,
page + slowest panel is reported beside it as the browser's critical path when the panels run in
parallel), an htmx fragment (the segment "why" panel), or a POST exactly as htmx sends it (the
segment builder's live count: the form's fields as the builder page renders them, urlencoded,
with the CSRF header and the htmx headers).

Each figure's probes are requested round-robin (every URL once per round, so a burst of load from
other processes hits all of them alike) for ``ROUNDS`` rounds after one untimed warm-up request
each, stopping after ``MIN_ROUNDS`` when the figure's time budget is spent. A figure's value is
the p95 of its **worst URL**; every URL's p50/p95/n is in the figure's ``urls``. A non-200 answer
is recorded and fails the figure, and so does a URL whose query string the page's FilterSet would
ignore or reject (``invalid_urls``): a filter that is silently dropped measures a different page.

``page_fixtures`` adds what the pages need for the part and takes it away afterwards, so the other
parts (ingestion re-evaluates every saved segment) measure the same data as before: three saved
segments of its own (the segment cases' one tag score, nested AND/OR with NOT, event window —
fixed definitions for the builder's preview and the "why" panel, whatever segments the data
holds), with materialised memberships and a week of size history; and lead owners when no
contact has one (the two sales users then hold ~2% of the contacts and a quarter of the hot
leads). The data's own saved segments are measured beside them.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F
from django.http import QueryDict
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bench.cases import SEGMENT_CASES
from bench.load import load_fragments
from contacts.filters import ContactFilterSet
from contacts.models import Contact, Tag, tag_key
from contacts.services import tag_stats_refresh
from leads.dashboard import dashboard_refresh
from leads.filters import HotLeadFilter
from leads.models import Funnel, Stage, TemperatureSettings
from loyalty.models import Tier
from segments.compiler import compile_definition, effective_definition
from segments.models import Segment, SegmentMember, SegmentSize

ROUNDS = 20  # requests per URL when the budget allows: p95 of 20 is the second-slowest
MIN_ROUNDS = 10  # … and at least this many, whatever the budget (then the p95 is the slowest)
# … unless a page takes seconds (the funnel report at 1M): past HARD_LIMIT × its budget a figure
# stops after FEW_ROUNDS — far above the target, its exact p95 matters less than the part ending
HARD_LIMIT = 4
FEW_ROUNDS = 3
# Seconds of requests per figure after which no new round starts: ~2.5 minutes for the part at
# 100k contacts, where the quick pages do all ROUNDS and the list, cards, hot leads and funnel
# report stop earlier; a slower machine or more data only reach MIN_ROUNDS (and take longer).
BUDGET_S = {
    "contact_list_p95_ms": 35.0, "contact_card_p95_ms": 20.0, "hot_leads_p95_ms": 25.0, "dashboard_p95_ms": 5.0,
    "funnel_report_p95_ms": 12.0, "tags_page_p95_ms": 5.0, "segment_list_p95_ms": 5.0,
    "segment_detail_p95_ms": 10.0, "segment_preview_p95_ms": 10.0, "segment_why_p95_ms": 8.0,
}
DASHBOARD_COMPUTE_RUNS = 5
CARD_CONTACTS = 12
WHY_CONTACTS = 2  # members and as many non-members per saved segment
BENCH_SEGMENT_PREFIX = "bench pages: "
BENCH_SEGMENT_CASES = ("segment_count_tag_score", "segment_count_nested_not", "segment_count_event_window")
SIZE_HISTORY_DAYS = 8
OWNER_USERS = ("sales", "sales2")
HTMX = (("HX-Request", "true"),)
SERVER = "http://testserver"


# --- What is measured ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """One thing a user waits for. ``data``: the POST's fields in the browser's order;
    ``headers``: what htmx adds; ``panels``: also fetch the fragments the page loads by itself."""

    url: str
    user: str = "admin"
    method: str = "GET"
    data: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    panels: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        label = self.url if self.method == "GET" else f"{self.method} {self.url}"
        if self.note:
            label += f" [{self.note}]"
        return label + (f" (as {self.user})" if self.user != "admin" else "")


@dataclass
class Timing:
    """One request of a probe (with its panels): milliseconds per part, in order."""

    parts: list[tuple[str, float, int]]  # (part, ms, status); the first part is the page itself

    @property
    def ms(self) -> float:
        return sum(ms for _, ms, _ in self.parts)

    @property
    def page_ms(self) -> float:
        return self.parts[0][1]

    @property
    def critical_ms(self) -> float:
        """Page, then its panels side by side: the page plus the slowest panel."""
        return self.page_ms + max((ms for _, ms, _ in self.parts[1:]), default=0.0)

    @property
    def statuses(self) -> list[int]:
        return [status for _, _, status in self.parts]


@dataclass
class UrlResult:
    probe: Probe
    timings: list[Timing] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the URL does not measure what it says


# --- Aggregation (pure) -------------------------------------------------------------------------
def percentile(samples: Sequence[float], share: float) -> float:
    """Nearest rank (as ``bench.run.p95``): of 20 samples the p95 is the 19th, of 10 the slowest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(samples: Sequence[float]) -> dict[str, Any]:
    return {"p50_ms": round(statistics.median(samples), 1), "p95_ms": round(percentile(samples, 0.95), 1),
            "max_ms": round(max(samples), 1), "n": len(samples)}


def route(url: str) -> str:
    """A fragment's URL with the ids replaced, so the card's panels group by kind."""
    return re.sub(r"/\d+/", "/<id>/", url.partition("?")[0])


def url_entry(result: UrlResult) -> dict[str, Any]:
    """One URL's line in a figure: p50/p95/n of the unit, its statuses and, for a page with
    panels, each part and the critical path."""
    entry: dict[str, Any] = summary([timing.ms for timing in result.timings])
    statuses = Counter(status for timing in result.timings for status in timing.statuses)
    entry["statuses"] = {str(status): count for status, count in sorted(statuses.items())}
    if any(len(timing.parts) > 1 for timing in result.timings):
        parts: dict[str, list[float]] = {}
        for timing in result.timings:
            for part, ms, _ in timing.parts:
                parts.setdefault(route(part), []).append(ms)
        entry["parts"] = {part: summary(samples) for part, samples in parts.items()}
        entry["critical_path"] = summary([timing.critical_ms for timing in result.timings])
    if result.problems:
        entry["problems"] = result.problems
    return entry


def page_figure(name: str, results: Sequence[UrlResult], *, measures: str, rounds: int = 0,
                seconds: float = 0.0) -> dict[str, Any]:
    """The figure of a group of URLs: the worst URL's p95 is the value; every URL's numbers under
    ``urls``; the five worst in ``slowest``; non-200 answers in ``errors``; URLs whose query
    the page would not apply in ``invalid_urls``."""
    measured = [result for result in results if result.timings]
    invalid = {result.probe.label: result.problems for result in results if result.problems}
    if not measured:
        return {"name": name, "value": None, "reason": "no URL could be measured", "invalid_urls": invalid,
                "measures": measures}
    entries = {result.probe.label: url_entry(result) for result in measured}
    ranked = sorted(entries.items(), key=lambda item: (-item[1]["p95_ms"], -item[1]["p50_ms"]))
    worst_label, worst = ranked[0]
    slowest_label = max(entries, key=lambda label: entries[label]["p50_ms"])
    statuses: Counter[int] = Counter()
    for result in measured:
        statuses.update(status for timing in result.timings for status in timing.statuses)
    errors = sum(count for status, count in statuses.items() if status != 200)
    figure: dict[str, Any] = {
        "name": name, "value": worst["p95_ms"], "unit": "ms", "worst_url": worst_label,
        "p50_ms": worst["p50_ms"], "n": worst["n"], "urls_measured": len(entries),
        "requests": sum(len(result.timings) for result in measured), "rounds": rounds, "seconds": round(seconds, 1),
        "statuses": {str(status): count for status, count in sorted(statuses.items())}, "errors": errors,
        "measures": measures,
        "slowest": [{"url": label, "p95_ms": entry["p95_ms"], "p50_ms": entry["p50_ms"], "n": entry["n"]}
                    for label, entry in ranked[:5]],
        # steadier than the p95 of 10-20 samples on a shared machine: the URL that is slow every time
        "worst_p50": {"url": slowest_label, "p50_ms": entries[slowest_label]["p50_ms"]},
        "urls": dict(ranked),
    }
    if errors:
        figure["error_examples"] = sorted({
            f"{result.probe.label}: {part} answered {status}" for result in measured for timing in result.timings
            for part, _, status in timing.parts if status != 200})[:10]
    if invalid:
        figure["invalid_urls"] = invalid
    if "critical_path" in worst:
        figure["critical_path_p95_ms"] = max(entry["critical_path"]["p95_ms"] for entry in entries.values())
        figure["page_only_p95_ms"] = max(entry["parts"]["page"]["p95_ms"] for entry in entries.values())
    return figure


def log_lines(figure: dict[str, Any]) -> list[str]:
    """The figure and its five worst URLs, for the progress log."""
    if figure.get("value") is None:
        return [f"{figure['name']}: not measured — {figure.get('reason')}"]
    head = (f"{figure['name']}: worst p95 {figure['value']} ms (p50 {figure['p50_ms']}) over "
            f"{figure['urls_measured']} URLs × {figure['rounds']} rounds, {figure['requests']} requests, "
            f"{figure['seconds']} s, statuses {figure['statuses']}")
    if figure["worst_p50"]["url"] != figure["worst_url"]:
        head += f"; highest p50: {figure['worst_p50']['p50_ms']} ms {figure['worst_p50']['url']}"
    if figure.get("invalid_urls"):
        head += f"; INVALID: {figure['invalid_urls']}"
    return [head] + [f"    p95 {row['p95_ms']:>7} ms  p50 {row['p50_ms']:>7} ms  {row['url']}" for row in figure["slowest"]]


# --- Query strings the page applies -------------------------------------------------------------
def filter_problems(filterset: Any, query: QueryDict, *, allowed: Sequence[str] = ("page",)) -> list[str]:
    """Why ``query`` would not filter as written: parameters the FilterSet does not know (django-filter
    drops them silently) and values its form rejects (the views then show nothing or everything)."""
    problems = [f"unknown parameter {key!r} (ignored by the page)" for key in query if key not in filterset.filters
                and key not in allowed]
    if not filterset.is_valid():
        problems += [f"{key}: {' '.join(map(str, errors))}" for key, errors in filterset.errors.items()]
    return problems


def contact_list_problems(url: str) -> list[str]:
    query = QueryDict(url.partition("?")[2])
    filterset = ContactFilterSet(query, queryset=Contact.objects.none())
    problems = filter_problems(filterset, query, allowed=("page", "anonymous"))
    if not problems and query.get("sort") and filterset.sort_value != query["sort"].strip():
        problems.append(f"sort {query['sort']!r} is not a sort of the list (it falls back to {filterset.sort_value!r})")
    if query.get("page") and not query["page"].isdigit():
        problems.append("page is not a number")
    if "anonymous" in query and query["anonymous"] != "include":
        problems.append("anonymous takes only 'include'")
    return problems


def hot_leads_problems(url: str, user: Any) -> list[str]:
    query = QueryDict(url.partition("?")[2])
    return filter_problems(HotLeadFilter(query, queryset=Contact.objects.none(), user=user), query)


# --- The URLs -----------------------------------------------------------------------------------
def _url(name: str, params: dict[str, Any] | None = None, **kwargs: Any) -> str:
    base = reverse(name, kwargs=kwargs or None)
    return f"{base}?{urlencode(params)}" if params else base


def _rows(sql: str, params: Any = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _existing_tags(*names: str) -> list[str]:
    """The names (as spelt here) of the tags that exist, in the given order."""
    known = set(Tag.objects.filter(key__in=[tag_key(name) for name in names]).values_list("key", flat=True))
    return [name for name in names if tag_key(name) in known]


def _rare_tag() -> str | None:
    """A long-tail tag: the one with the fewest contacts among a deterministic handful of tags
    (each counted through the (tag, score) index)."""
    candidates = list(Tag.objects.order_by("-pk").values_list("pk", "name")[:8])
    counted = [(_rows("SELECT count(*) FROM contacts_contacttag WHERE tag_id = %s", [pk])[0][0], name)
               for pk, name in candidates]
    counted = [(count, name) for count, name in counted if count]
    return min(counted)[1] if counted else None


def contact_list_urls(*, segment_ids: Sequence[int] = ()) -> list[str]:
    """Every filter and sort the contact list offers, with values that exist in the data: the
    FilterSet's own filters (search, tag + minimum score, country, city, consent, owner, created
    range, sort — the fixed orders and a tag's score) and those other areas register (temperature,
    funnel stage, loyalty tier, saved segment), a popular and a rare value where it matters, and a
    page reached by "Next"."""
    base = reverse("contacts:list")
    popular = _existing_tags("kurtki", "sukienki", "PURCHASE", "diamenty")
    rare = _rare_tag()
    today = timezone.localdate()
    cities = [row[0] for row in _rows(
        "SELECT city FROM contacts_contact WHERE city <> '' GROUP BY city ORDER BY count(*) DESC, city LIMIT 1")]
    cities += [row[0] for row in _rows(  # a small town: among the first contacts, the rarest city
        "SELECT city FROM (SELECT city FROM contacts_contact WHERE city <> '' ORDER BY id LIMIT 2000) c "
        "GROUP BY city ORDER BY count(*), city LIMIT 1")]
    owner_id = next(iter(Contact.objects.filter(owner__isnull=False).order_by("owner_id")
                         .values_list("owner_id", flat=True)[:1]), None)
    stages = list(Stage.objects.order_by("funnel_id", "position").values_list("pk", flat=True))
    tiers = list(Tier.objects.order_by("program_id", "min").values_list("pk", flat=True))
    params: list[dict[str, Any]] = [
        {}, {"sort": "score"}, {"sort": "-last_activity"}, {"sort": "last_activity"}, {"sort": "-created"},
        {"sort": "created"}, {"page": 3}, {"q": "kowalsk"}, {"q": "nowak", "country": "PL"},
        {"country": "PL", "sort": "-score"}, {"country": "DE"},
        {"temperature": "hot"}, {"temperature": "warm", "sort": "-last_activity"}, {"temperature": "cold"},
        # the dashboard's "New this week" link
        {"created_after": (today - timedelta(days=6)).isoformat(), "sort": "-created"},
        {"created_before": (today - timedelta(days=365)).isoformat()},
        {"created_after": (today - timedelta(days=180)).isoformat(), "created_before": (today - timedelta(days=90)).isoformat()},
        {"owner": "none"}, {"anonymous": "include"},
        {"consent": "email:granted"}, {"consent": "email:none"}, {"consent": "sms:granted"}, {"consent": "sms:withdrawn"},
    ]
    params += [{"city": city} for city in cities]
    if owner_id is not None:
        params.append({"owner": owner_id})
    if popular:
        params += [{"tag": popular[0]}, {"tag": popular[0], "tag_min": 3}, {"sort": f"tag:{popular[0]}"},
                   {"tag": popular[0], "temperature": "hot"}]
    if len(popular) > 1:
        params.append({"tag": popular[1], "sort": "-score", "page": 2})
    params += [{"tag": name, "tag_min": 6} for name in popular[2:]]
    if rare:
        params += [{"tag": rare}, {"sort": f"tag:{rare}"}]
    # the first and last stage of a funnel and tier of a programme: the largest and a small group
    params += [{"stage": pk} for pk in dict.fromkeys(stages[:1] + stages[-1:])]
    params += [{"tier": pk} for pk in dict.fromkeys(tiers[:1] + tiers[-1:])]
    params += [{"segment": pk} for pk in segment_ids]
    return [f"{base}?{urlencode(p)}" if p else base for p in params]


def card_contact_ids(count: int = CARD_CONTACTS) -> list[int]:
    """Contacts spread over the table by a hash of the id, and the highest-scored one (the
    busiest card: most points, stages and timeline)."""
    spread = [row[0] for row in _rows("SELECT id FROM contacts_contact WHERE NOT is_anonymous "
                                      "ORDER BY md5(id::text) LIMIT %s", [count - 1])]
    top = [row[0] for row in _rows("SELECT id FROM contacts_contact WHERE NOT is_anonymous "
                                   "ORDER BY score DESC, id LIMIT 1")]
    return list(dict.fromkeys(top + spread))


def hot_leads_urls() -> list[str]:
    """The hot-leads list's filters (HotLeadFilter: temperature, owner, status, growth, score range,
    sort, search) and pages, every one a parameter the FilterSet applies."""
    base = reverse("leads:hot")
    params: list[dict[str, Any]] = [
        {}, {"page": 2}, {"page": 5}, {"sort": "growth"}, {"sort": "activity"}, {"owner": "none"},
        {"owner": "mine"}, {"owner": "others"}, {"status": "any"}, {"status": "new"}, {"growth": "up"},
        {"growth": "down", "sort": "growth"}, {"growth": "flat"}, {"temperature": "warm"},
        {"temperature": "any", "status": "any", "score_min": 200, "score_max": 299}, {"q": "a"}, {"q": "kowalsk"},
    ]
    return [f"{base}?{urlencode(p)}" if p else base for p in params]


# --- Fixtures: saved segments and lead owners ----------------------------------------------------
@dataclass
class Fixtures:
    segment_ids: list[int]  # the bench segments, then up to three others the database holds
    bench_segment_ids: list[int]
    owners_assigned: int
    notes: list[str]


def _owner_condition() -> str:
    # ~2% of all contacts and, of the hot ones, a quarter: what sales people claim
    return "(abs(hashint8extended(id, 71)) %% 50 = 0 OR (score >= %(hot)s AND abs(hashint8extended(id, 72)) %% 4 = 0))"


def _owners_assign() -> tuple[int, list[int]]:
    users = list(get_user_model().objects.filter(username__in=OWNER_USERS).order_by("username").values_list("pk", flat=True))
    if len(users) < 2 or Contact.objects.filter(owner__isnull=False).exists():
        return 0, users
    hot = TemperatureSettings.current().hot
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE contacts_contact SET owner_id = CASE WHEN id %% 2 = 0 THEN %(a)s ELSE %(b)s END "
                       f"WHERE owner_id IS NULL AND NOT is_anonymous AND {_owner_condition()}",
                       {"a": users[0], "b": users[1], "hot": hot})
        return cursor.rowcount, users


def _owners_release(users: list[int]) -> None:
    if len(users) < 2:
        return
    with connection.cursor() as cursor:
        # the contacts given above whatever their score is now: the condition with no score floor
        cursor.execute(f"UPDATE contacts_contact SET owner_id = NULL WHERE owner_id = ANY(%(users)s) "
                       f"AND {_owner_condition()}", {"users": users, "hot": -(2**31)})


def _bench_segments() -> list[Segment]:
    """The saved segments of the segment cases (for sending, as the builder starts a new one),
    their memberships materialised and a week of daily sizes, as a refreshed segment has."""
    segments = []
    for case in SEGMENT_CASES:
        if case.name not in BENCH_SEGMENT_CASES:
            continue
        name = BENCH_SEGMENT_PREFIX + case.description
        segment = Segment.objects.filter(name=name).first()
        if segment is None:
            segment = Segment.objects.create(name=name, definition=case.definition, for_sending=True,
                                             description="The benchmark's page measurements (removed after them).")
        if segment.refreshed_at is None:
            _materialise(segment)
            segment.refresh_from_db()
        segments.append(segment)
    # the statistics autovacuum gathers a minute after such a write: without them the planner
    # takes the new members for a handful and the detail pages are planned for that
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE segments_segmentmember, segments_segmentsize")
    return segments


def _materialise(segment: Segment) -> None:
    """Members written in SQL (segment_refresh would also queue a "segment.entered" message per
    member for webhooks, which the ingest part would then deliver)."""
    now = timezone.now()
    members_sql, params = (Contact.objects.filter(compile_definition(effective_definition(segment), now=now))
                           .values("id").query.sql_with_params())
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO segments_segmentmember (segment_id, contact_id, added_at) "
                       f"SELECT %s, id, %s FROM ({members_sql}) m ON CONFLICT DO NOTHING", [segment.pk, now, *params])
    count = SegmentMember.objects.filter(segment=segment).count()
    SegmentSize.objects.bulk_create([SegmentSize(segment=segment, count=count, measured_at=now - timedelta(days=days))
                                     for days in range(SIZE_HISTORY_DAYS - 1, -1, -1)])
    Segment.objects.filter(pk=segment.pk).update(count=count, refreshed_at=now, version=1)


@contextmanager
def page_fixtures(say: Callable[[str], None]) -> Iterator[Fixtures]:
    """Saved segments, lead owners and the Tags page's counts for the part; the segments and the
    owners go again afterwards (the tag counts are a snapshot the app keeps anyway)."""
    notes = []
    started = time.perf_counter()
    # a killed run may have left them: start from none
    Segment.objects.filter(name__startswith=BENCH_SEGMENT_PREFIX).delete()
    assigned, owner_users = _owners_assign()
    if assigned:
        notes.append(f"{assigned:,} contacts given to {' and '.join(OWNER_USERS)} as owners for the part")
    if not _rows("SELECT 1 FROM contacts_tagstats LIMIT 1"):
        tag_stats_refresh()
        notes.append("tag counts (TagStats) computed: the Tags page reads them above "
                     "MH_TAG_STATS_LIVE_MAX_ROWS contact-tags, as after the app's scheduled recount")
    try:
        bench = _bench_segments()
        # the data's own saved segments too: the three largest (a detail page lists its members)
        others = list(Segment.objects.exclude(name__startswith=BENCH_SEGMENT_PREFIX)
                      .order_by(F("count").desc(nulls_last=True), "pk").values_list("pk", flat=True)[:3])
        say(f"views: {len(bench)} saved segments ({', '.join(f'{s.count:,}' for s in bench)} members), "
            f"{assigned:,} lead owners, set up in {time.perf_counter() - started:.1f}s (not counted)")
        yield Fixtures(segment_ids=[s.pk for s in bench] + others, bench_segment_ids=[s.pk for s in bench],
                       owners_assigned=assigned, notes=notes)
    finally:
        Segment.objects.filter(name__startswith=BENCH_SEGMENT_PREFIX).delete()
        if assigned:
            _owners_release(owner_users)


# --- Requests -----------------------------------------------------------------------------------
def client_for(username: str) -> Client:
    """A browser of ``username``: a session, CSRF checked as in production, errors as statuses."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username=username))
    return client


def fetch(client: Client, probe: Probe) -> Timing:
    """One request as the browser makes it, and the panels the page then loads (in order)."""
    headers = dict(probe.headers)
    started = time.perf_counter()
    if probe.method == "POST":
        response = client.post(probe.url, data=urlencode(probe.data), content_type="application/x-www-form-urlencoded",
                               headers=headers)
    else:
        response = client.get(probe.url, headers=headers)
    parts = [("page", (time.perf_counter() - started) * 1000, response.status_code)]
    if probe.panels and response.status_code == 200:
        for url in load_fragments(response.content.decode()):
            started = time.perf_counter()
            panel = client.get(url, headers={**dict(HTMX), "HX-Current-URL": SERVER + probe.url})
            parts.append((url, (time.perf_counter() - started) * 1000, panel.status_code))
    return Timing(parts)


def run_probes(clients: dict[str, Client], results: list[UrlResult], *, budget_s: float, rounds: int = ROUNDS,
               min_rounds: int = MIN_ROUNDS) -> tuple[int, float]:
    """Warm every URL once, then request them round-robin; returns the rounds done and seconds."""
    for result in results:
        fetch(clients[result.probe.user], result.probe)
    started = time.perf_counter()
    done = 0
    for _ in range(rounds):
        for result in results:
            result.timings.append(fetch(clients[result.probe.user], result.probe))
        done += 1
        elapsed = time.perf_counter() - started
        if (done >= min_rounds and elapsed > budget_s) or (done >= FEW_ROUNDS and elapsed > HARD_LIMIT * budget_s):
            break
    return done, time.perf_counter() - started


# --- The builder's POST, as the browser sends it -------------------------------------------------
class _FormFields(HTMLParser):
    """The fields a form submits (htmx serialises a form as the browser would): named inputs
    except buttons, checked boxes ("on" unless a value is given), each select's selected option
    (else its first), textareas; plus the body's ``hx-headers`` (the CSRF header)."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self.hx_headers: dict[str, str] = {}
        self._select: str | None = None
        self._options: list[tuple[str | None, bool]] = []
        self._option_text: list[str] = []
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "body" and values.get("hx-headers"):
            self.hx_headers = json.loads(values["hx-headers"] or "{}")
        if tag == "form":
            self.inside = values.get("id") == self.form_id
        if not self.inside:
            return
        name = values.get("name")
        disabled = "disabled" in values
        if tag == "input" and name and not disabled:
            kind = (values.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in values:
                    self.fields.append((name, values.get("value") or "on"))
            elif kind not in ("submit", "button", "image", "reset", "file"):
                self.fields.append((name, values.get("value") or ""))
        elif tag == "select":
            self._select = name if name and not disabled else None
            self._options = []
        elif tag == "option" and self._select is not None:
            self._options.append((values.get("value"), "selected" in values))
            self._option_text = []
        elif tag == "textarea" and name and not disabled:
            self._textarea, self._text = name, []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)
        elif self._select is not None and self._options and self._options[-1][0] is None:
            self._option_text.append(data)
            self._options[-1] = (None, self._options[-1][1])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "option" and self._select is not None and self._options and self._options[-1][0] is None:
            self._options[-1] = ("".join(self._option_text).strip(), self._options[-1][1])
        elif tag == "select" and self._select is not None:
            chosen = next((value for value, selected in self._options if selected), None)
            if chosen is None and self._options:
                chosen = self._options[0][0]
            if chosen is not None:
                self.fields.append((self._select, chosen))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, "".join(self._text)))
            self._textarea = None


def form_fields(html: str, form_id: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The fields form ``form_id`` of ``html`` submits, and the page's htmx headers."""
    parser = _FormFields(form_id)
    parser.feed(html)
    parser.close()
    return parser.fields, parser.hx_headers


def preview_probe(client: Client, segment: Segment) -> Probe:
    """The builder's live count for ``segment``'s definition, as a new segment copied from it:
    the builder page renders the form (the "for sending" box ticked as the builder does for a new
    segment), htmx posts all of it to the preview on load and on every change."""
    page_url = _url("segments:create", {"copy": segment.pk})
    page = client.get(page_url)
    if page.status_code != 200:
        raise RuntimeError(f"GET {page_url} answered {page.status_code}")
    fields, hx_headers = form_fields(page.content.decode(), "builder")
    headers = {**dict(HTMX), "HX-Trigger": "builder", "HX-Target": "preview", "HX-Current-URL": SERVER + page_url,
               **hx_headers}
    return Probe(reverse("segments:builder_preview"), method="POST", data=tuple(fields), headers=tuple(headers.items()),
                 note=segment.name.removeprefix(BENCH_SEGMENT_PREFIX))


def why_contacts(segment_id: int, count: int = WHY_CONTACTS) -> list[int]:
    """Members and non-members of a segment, spread over the table."""
    members = [row[0] for row in _rows(
        "SELECT contact_id FROM segments_segmentmember WHERE segment_id = %s ORDER BY md5(contact_id::text) LIMIT %s",
        [segment_id, count])]
    others = [row[0] for row in _rows(
        "SELECT id FROM contacts_contact c WHERE NOT is_anonymous AND NOT EXISTS (SELECT 1 FROM segments_segmentmember m "
        "WHERE m.segment_id = %s AND m.contact_id = c.id) ORDER BY md5(id::text) LIMIT %s", [segment_id, count])]
    return members + others


# --- The figures ----------------------------------------------------------------------------------
MEASURES = {
    "contact_list_p95_ms": "GET /contacts/ (the full page) with every filter and sort the list offers",
    "contact_card_p95_ms": "GET a contact's card, then each panel it loads itself (hx-trigger load, HX-Request) one after "
                           "the other: the sum per contact; critical_path = page + slowest panel",
    "hot_leads_p95_ms": "GET /leads/hot/ with every filter, sort and page of HotLeadFilter, as admin and as a sales user",
    "dashboard_p95_ms": "GET / as served: the stored snapshot (fresh, no refresh requested) rendered with its charts",
    "funnel_report_p95_ms": "GET /leads/funnels/<id>/ (the funnel report) for every date range it offers",
    "tags_page_p95_ms": "GET /contacts/tags/ (counts from the TagStats snapshot above MH_TAG_STATS_LIVE_MAX_ROWS)",
    "segment_list_p95_ms": "GET /segments/ (with a search)",
    "segment_detail_p95_ms": "GET /segments/<id>/ of the bench's and the three largest saved segments (members page 1; "
                             "page 2 of the largest)",
    "segment_preview_p95_ms": "POST /segments/builder/preview/ as htmx sends it from the builder (form fields, CSRF, "
                              "HX headers): validate, count, sample, sentence, render",
    "segment_why_p95_ms": "GET /segments/card/<contact>/?segment=<id> with HX-Request: the card's \"why (not) in\" "
                          "panel, members and non-members",
}


def page_probes(clients: dict[str, Client], fixtures: Fixtures) -> dict[str, list[UrlResult]]:
    """Every figure's URLs, each checked against the page's FilterSet where it has one."""
    admin = get_user_model().objects.get(username="admin")
    sales = get_user_model().objects.get(username="sales")
    out: dict[str, list[UrlResult]] = {}
    out["contact_list_p95_ms"] = [UrlResult(Probe(url), problems=contact_list_problems(url))
                                  for url in contact_list_urls(segment_ids=fixtures.segment_ids[:1] + fixtures.segment_ids[3:4])]
    out["contact_card_p95_ms"] = [UrlResult(Probe(_url("contacts:card", contact_id=pk), panels=True))
                                  for pk in card_contact_ids()]
    hot = hot_leads_urls()
    # a sales user sees their own leads, no assignee selects; four lists as they open them most
    out["hot_leads_p95_ms"] = [UrlResult(Probe(url), problems=hot_leads_problems(url, admin)) for url in hot] + [
        UrlResult(Probe(url, user="sales"), problems=hot_leads_problems(url, sales))
        for url in hot if url.endswith(("/hot/", "owner=mine", "owner=others", "sort=growth"))]
    out["dashboard_p95_ms"] = [UrlResult(Probe(reverse("dashboard")))]
    funnels = list(Funnel.objects.order_by("created_at", "pk").values_list("pk", flat=True)[:3])
    today = timezone.localdate()
    ranges: list[dict[str, Any]] = [{}, {"range": 7}, {"range": 30}, {"range": 90}, {"range": 365},
                                    {"start": (today - timedelta(days=180)).isoformat(), "end": today.isoformat()}]
    out["funnel_report_p95_ms"] = [UrlResult(Probe(_url("leads:funnel_detail", params, funnel_id=pk)))
                                   for pk in funnels for params in ranges]
    out["tags_page_p95_ms"] = [UrlResult(Probe(_url("contacts:tags", params)))
                               for params in ({}, {"page": 2}, {"q": "marka"})]
    out["segment_list_p95_ms"] = [UrlResult(Probe(_url("segments:list", params))) for params in ({}, {"q": "bench"})]
    segments = list(Segment.objects.filter(pk__in=fixtures.segment_ids).order_by("pk"))
    details = [UrlResult(Probe(_url("segments:detail", segment_id=s.pk))) for s in segments]
    largest = max(segments, key=lambda s: s.count or 0, default=None)
    if largest is not None and (largest.count or 0) > 50:  # "Next" once
        details.append(UrlResult(Probe(_url("segments:detail", {"page": 2}, segment_id=largest.pk))))
    out["segment_detail_p95_ms"] = details
    bench_segments = [s for s in segments if s.pk in fixtures.bench_segment_ids]
    out["segment_preview_p95_ms"] = [UrlResult(preview_probe(clients["admin"], s)) for s in bench_segments]
    out["segment_why_p95_ms"] = [
        UrlResult(Probe(_url("segments:card_panel", {"segment": s.pk}, contact_id=pk),
                        headers=(*HTMX, ("HX-Target", "segment-why"),
                                 ("HX-Current-URL", SERVER + _url("contacts:card", contact_id=pk)))))
        for s in bench_segments for pk in why_contacts(s.pk)]
    return out


def measure_dashboard_compute(runs: int = DASHBOARD_COMPUTE_RUNS) -> dict[str, Any]:
    """``leads.dashboard.dashboard_refresh``: every dashboard figure computed and stored — what the
    worker does for an open dashboard each minute, and what the first view waits for."""
    dashboard_refresh()  # warm-up (and a fresh snapshot for the page measured next)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        dashboard_refresh()
        samples.append((time.perf_counter() - started) * 1000)
    return {"name": "dashboard_compute_ms", "value": round(statistics.median(samples), 1), "unit": "ms",
            "p95_ms": round(percentile(samples, 0.95), 1), "runs": runs, "samples_ms": [round(s, 1) for s in samples],
            "measures": "leads.dashboard.dashboard_refresh(): the dashboard's figures computed from the tables and "
                        "stored as its snapshot (the uncached cost; median of the runs)"}


class QueryTimer:
    """``connection.execute_wrapper`` counting statements and their time (no plans, little overhead)."""

    def __init__(self) -> None:
        self.count = 0
        self.ms = 0.0

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.ms += (time.perf_counter() - started) * 1000


def sql_share(client: Client, probe: Probe, runs: int = 3) -> dict[str, Any]:
    """Of a URL's time, how much is spent waiting for the database (median of ``runs``): the rest
    is Python — the view and template rendering."""
    totals, sql_ms, queries = [], [], []
    for _ in range(runs):
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            timing = fetch(client, probe)
        totals.append(timing.ms)
        sql_ms.append(timer.ms)
        queries.append(timer.count)
    return {"request_ms": round(statistics.median(totals), 1), "sql_ms": round(statistics.median(sql_ms), 1),
            "queries": int(statistics.median(queries))}


_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def slowest_statements(statements: list[dict[str, Any]], limit: int = 3) -> list[dict[str, Any]]:
    """The statements with the longest ``Execution Time`` in their plans, with those plans."""
    timed = []
    for statement in statements:
        match = _EXECUTION.search(statement.get("plan") or "")
        if match:
            timed.append({"ms": float(match.group(1)), "sql": statement["sql"][:2000], "plan": statement["plan"]})
    return sorted(timed, key=lambda item: -item["ms"])[:limit]
