"""The home dashboard: KPIs and charts, each linking to the list behind it.

At a million contacts every figure is one aggregate query that an index answers (score,
created_at, (type, occurred_at) on events, (stage) on funnel rows), and tag popularity on a huge
contact-tag table comes from the planner's statistics (marked as an estimate) instead of a full
count. Together they still take from a few hundred milliseconds to seconds, so the page does not
compute them: it reads the last ``DashboardSnapshot`` (one row, shared by every web process), and
a snapshot older than ``DASHBOARD_FRESH_SECONDS`` asks the worker for a new one
(``dashboard_refresh_task``) while the page shows the one it has, saying when it is from. Only
the very first view (or the first after the thresholds change) computes while it waits.

The snapshot also holds the charts, built once per language when it is computed: building the
Plotly figures (graph_objects validates and copies every property) took about 50 of the 65 ms a
view spent at 100k contacts, and a view serves the same figures until the next snapshot. Their
labels and hover texts are translated, so each language gets its own copy.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from contacts.models import EVENT_TYPE_CHOICES, EVENT_TYPES
from core.paging import table_rows_estimate
from core.roles import MARKETER, SALES, has_role
from leads import charts
from leads.models import DashboardSnapshot, Funnel, TemperatureSettings
from leads.services import OPEN_STATUSES

EVENT_TYPE_LABELS = dict(EVENT_TYPE_CHOICES)

DASHBOARD_FRESH_SECONDS = 60
EXACT_TAG_COUNT_LIMIT = 500_000  # contact-tag rows; above this, top tags are estimated
EVENT_DAYS = 30
HISTOGRAM_BUCKETS = 12


def _url(name: str, **params) -> str:
    url = reverse(name)
    return f"{url}?{urlencode(params)}" if params else url


def contact_list_url(**params) -> str:
    """The contact list filtered by ``params`` (its querystring is the filter)."""
    return _url("contacts:list", **params)


def _contact_stats(warm: int, hot: int, week_ago: datetime) -> dict:
    """Totals, new this week and temperatures: one pass over the contacts."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE created_at >= %(week_ago)s),
                   count(*) FILTER (WHERE score < %(warm)s),
                   count(*) FILTER (WHERE score >= %(warm)s AND score < %(hot)s),
                   count(*) FILTER (WHERE score >= %(hot)s),
                   count(*) FILTER (WHERE score >= %(hot)s AND lead_status = ANY(%(open)s))
            FROM contacts_contact WHERE NOT is_anonymous
            """,
            {"warm": warm, "hot": hot, "week_ago": week_ago, "open": list(OPEN_STATUSES)},
        )
        total, new_week, cold, warm_count, hot_count, hot_open = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM contacts_contact WHERE created_at >= %(a)s AND created_at < %(b)s AND NOT is_anonymous",
            {"a": week_ago - timedelta(days=7), "b": week_ago},
        )
        new_prev_week = cursor.fetchone()[0]
    return {
        "total": total, "new_week": new_week, "new_prev_week": new_prev_week,
        "temperatures": {"cold": cold, "warm": warm_count, "hot": hot_count},
        # the Hot leads page lists only open leads (not yet won or lost) by default
        "hot_open": hot_open,
    }


def _nice_width(span: int) -> int:
    """The smallest 1/2/2.5/5 × 10^k bucket width giving at most HISTOGRAM_BUCKETS buckets."""
    raw = max(1, span) / HISTOGRAM_BUCKETS
    magnitude = 1
    while True:
        for step in (1, 2, 2.5, 5):
            width = step * magnitude
            if width >= raw and float(width).is_integer():
                return int(width)
        magnitude *= 10


def _score_buckets(warm: int, hot: int) -> tuple[int, list[tuple[int, int, int]]]:
    """Contacts per score bucket of a round width, from 0 to about twice the hot threshold;
    negatives in one bucket, the long tail in the last."""
    width = _nice_width(max(hot, 1) * 2)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT least(greatest(floor(score::numeric / %(w)s), -1), %(n)s)::int AS bucket, count(*)
            FROM contacts_contact WHERE NOT is_anonymous GROUP BY 1 ORDER BY 1
            """,
            {"w": width, "n": -(-max(hot, 1) * 2 // width)},
        )
        rows = cursor.fetchall()
    return width, [(bucket * width, (bucket + 1) * width, count) for bucket, count in rows]


def _top_tags(limit: int = 10) -> tuple[list[tuple[str, int]], bool]:
    """(tag name, contacts) most popular first; the flag says whether the counts are estimates."""
    rows_estimate = table_rows_estimate("contacts_contacttag")
    with connection.cursor() as cursor:
        if rows_estimate > EXACT_TAG_COUNT_LIMIT:
            # pg_stats keeps the most common tag ids and their frequencies from ANALYZE's sample.
            cursor.execute(
                """
                SELECT t.name, (s.freq * %(rows)s)::bigint
                FROM pg_stats ps
                CROSS JOIN LATERAL unnest(ps.most_common_vals::text::bigint[], ps.most_common_freqs) AS s(tag_id, freq)
                JOIN contacts_tag t ON t.id = s.tag_id
                WHERE ps.tablename = 'contacts_contacttag' AND ps.attname = 'tag_id'
                ORDER BY s.freq DESC LIMIT %(limit)s
                """,
                {"rows": rows_estimate, "limit": limit},
            )
            rows = cursor.fetchall()
            if rows:
                return [(name, int(count)) for name, count in rows], True
        cursor.execute(
            """
            SELECT t.name, c.n FROM (
                SELECT tag_id, count(*) AS n FROM contacts_contacttag
                WHERE contact_id NOT IN (SELECT id FROM contacts_contact WHERE is_anonymous)
                GROUP BY tag_id ORDER BY n DESC LIMIT %(limit)s
            ) c JOIN contacts_tag t ON t.id = c.tag_id ORDER BY c.n DESC, t.name
            """,
            {"limit": limit},
        )
        return [(name, int(count)) for name, count in cursor.fetchall()], False


def _events(now: datetime) -> tuple[int, int, list[str], dict[str, list[int]]]:
    """Events today and yesterday, and per day and type over the last 30 days. ``type = ANY``
    lets the (type, occurred_at) index answer each type with one range scan."""
    zone = timezone.get_current_timezone()
    today = timezone.localdate(now)
    start_today = datetime.combine(today, time.min, tzinfo=zone)
    start = start_today - timedelta(days=EVENT_DAYS - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (occurred_at AT TIME ZONE %(tz)s)::date AS day, type, count(*)
            FROM automation_event
            WHERE type = ANY(%(types)s) AND occurred_at >= %(start)s AND occurred_at <= %(now)s
            GROUP BY 1, 2
            """,
            {"tz": str(zone), "types": EVENT_TYPES, "start": start, "now": now},
        )
        rows = cursor.fetchall()
    days = [today - timedelta(days=offset) for offset in range(EVENT_DAYS - 1, -1, -1)]
    index = {day: position for position, day in enumerate(days)}
    series: dict[str, list[int]] = {}
    for day, event_type, count in rows:
        if day in index:
            series.setdefault(event_type, [0] * len(days))[index[day]] = count
    ordered = dict(sorted(series.items(), key=lambda item: -sum(item[1])))
    today_total = sum(values[-1] for values in ordered.values())
    yesterday_total = sum(values[-2] for values in ordered.values()) if len(days) > 1 else 0
    return today_total, yesterday_total, [day.isoformat() for day in days], ordered


def _traffic(now: datetime, events_7d: int) -> dict:
    """Known vs anonymous traffic over the last 7 days: the events of anonymous visitors' profiles
    (each profile's events by the (contact, time) index — there are few profiles next to the
    contacts), the rest of ``events_7d`` from known contacts; and how many profiles wait for an
    identify."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (SELECT count(*) FROM contacts_contact WHERE is_anonymous),
                   (SELECT count(*) FROM contacts_contact a JOIN automation_event e ON e.contact_id = a.id
                    WHERE a.is_anonymous AND e.type = ANY(%(types)s) AND e.occurred_at >= %(since)s
                      AND e.occurred_at <= %(now)s)
            """,
            {"types": EVENT_TYPES, "now": now, "since": datetime.combine(
                timezone.localdate(now) - timedelta(days=6), time.min, tzinfo=timezone.get_current_timezone())},
        )
        profiles, anonymous = cursor.fetchone()
    return {"known_events": max(0, events_7d - anonymous), "anonymous_events": anonymous, "anonymous_profiles": profiles}


def _funnel() -> tuple[Funnel | None, list[tuple[int, str, int]]]:
    funnel = Funnel.objects.order_by("created_at", "pk").first()
    if funnel is None:
        return None, []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.id, s.name, count(cs.contact_id)
            FROM leads_stage s LEFT JOIN leads_contactstage cs ON cs.stage_id = s.id
                 AND cs.contact_id NOT IN (SELECT id FROM contacts_contact WHERE is_anonymous)
            WHERE s.funnel_id = %s GROUP BY s.id, s.name, s.position ORDER BY s.position
            """,
            [funnel.pk],
        )
        return funnel, cursor.fetchall()


def _active_rules() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM automation_rule WHERE active")
        return cursor.fetchone()[0]


def _key(thresholds: TemperatureSettings) -> str:
    return f"{thresholds.warm}:{thresholds.hot}"


def dashboard_data(*, use_cache: bool = True) -> dict:
    """Everything the dashboard shows, as plain data: the stored snapshot for the current
    thresholds (a refresh requested when it is older than ``DASHBOARD_FRESH_SECONDS``), computed
    now when there is none or ``use_cache`` is false."""
    thresholds = TemperatureSettings.current()
    snapshot = DashboardSnapshot.objects.filter(key=_key(thresholds)).first() if use_cache else None
    if snapshot is None:
        return dashboard_refresh(thresholds)
    stale = timezone.now() - snapshot.computed_at > timedelta(seconds=DASHBOARD_FRESH_SECONDS)
    if stale:
        _refresh_request(snapshot.key)
    return {**snapshot.data, "computed_at": snapshot.computed_at, "stale": stale}


def _refresh_request(key: str) -> None:
    """Ask the worker for new figures, once: the views that find the snapshot old in the same
    minute ask together (a conditional UPDATE lets one of them through)."""
    from leads.tasks import dashboard_refresh_task  # local import: leads.tasks imports this module

    asked = DashboardSnapshot.objects.filter(key=key).filter(
        models.Q(refresh_requested_at__isnull=True)
        | models.Q(refresh_requested_at__lt=timezone.now() - timedelta(seconds=DASHBOARD_FRESH_SECONDS)),
    ).update(refresh_requested_at=timezone.now())
    if asked:
        transaction.on_commit(lambda: dashboard_refresh_task.delay(), robust=True)


def dashboard_refresh(thresholds: TemperatureSettings | None = None) -> dict:
    """Compute the figures for the current thresholds and store them as their snapshot."""
    thresholds = thresholds or TemperatureSettings.current()
    data = _dashboard_compute(thresholds)
    data["figures"] = _figures_by_language(data)
    DashboardSnapshot.objects.update_or_create(
        key=_key(thresholds),
        defaults={"data": {k: v for k, v in data.items() if k != "computed_at"}, "computed_at": data["computed_at"],
                  "refresh_requested_at": None},
    )
    return {**data, "stale": False}


def _dashboard_compute(thresholds: TemperatureSettings) -> dict:
    now = timezone.now()
    # "This week" = the last 7 calendar days including today, as the contact list's created_after.
    week_start = datetime.combine(timezone.localdate(now) - timedelta(days=6), time.min, tzinfo=timezone.get_current_timezone())
    contacts = _contact_stats(thresholds.warm, thresholds.hot, week_start)
    width, buckets = _score_buckets(thresholds.warm, thresholds.hot)
    top_tags, tags_estimated = _top_tags()
    events_today, events_yesterday, days, event_series = _events(now)
    funnel, funnel_stages = _funnel()
    data = {
        "computed_at": now,
        "warm": thresholds.warm,
        "hot": thresholds.hot,
        "contacts": contacts,
        "bucket_width": width,
        "tail_start": width * -(-max(thresholds.hot, 1) * 2 // width),
        "buckets": buckets,
        "top_tags": top_tags,
        "tags_estimated": tags_estimated,
        "events_today": events_today,
        "events_yesterday": events_yesterday,
        "event_days": days,
        "event_series": event_series,
        "funnel": {"id": funnel.pk, "name": funnel.name} if funnel else None,
        "funnel_stages": funnel_stages,
        "active_rules": _active_rules(),
        # the series' last 7 days: the same window as _traffic's (by calendar day, today included)
        "traffic": _traffic(now, sum(sum(values[-7:]) for values in event_series.values())),
    }
    return data


def _signed(value: int) -> str:
    return f"+{intcomma(value)}" if value > 0 else f"−{intcomma(abs(value))}" if value < 0 else "±0"


def dashboard_context(request: HttpRequest) -> dict:
    """The context ``marketing_hub.views.dashboard`` renders ``marketing_hub/dashboard.html`` with."""
    data = dashboard_data()
    hot = data["hot"]
    contacts = data["contacts"]
    temps = contacts["temperatures"]
    hot_url = _url("leads:hot") if has_role(request.user, SALES, MARKETER) else contact_list_url(temperature="hot")
    # Rules and event processing are Marketer/Admin pages: Sales get the figures without links.
    manager = has_role(request.user, MARKETER)
    events_url = _url("automation:events") if manager else ""
    kpis = [
        {"label": _("Contacts"), "value": intcomma(contacts["total"]), "icon": "users", "href": contact_list_url()},
        {
            "label": _("New this week"), "value": intcomma(contacts["new_week"]), "icon": "user",
            "delta": _("%(delta)s vs last week") % {"delta": _signed(contacts["new_week"] - contacts["new_prev_week"])},
            "href": contact_list_url(created_after=(timezone.localdate() - timedelta(days=6)).isoformat(), sort="-created"),
        },
        {"label": _("Hot leads"), "value": intcomma(temps["hot"]), "icon": "flame", "href": hot_url,
         # counts differ by definition from the Hot leads page's (open leads only): say both
         "hint": _("score ≥ %(hot)s, any status; %(open)s still open (the Hot leads page)")
         % {"hot": hot, "open": intcomma(contacts.get("hot_open", 0))}},
        {
            "label": _("Events today"), "value": intcomma(data["events_today"]), "icon": "activity",
            "delta": _("%(delta)s vs yesterday") % {"delta": _signed(data["events_today"] - data["events_yesterday"])},
            "href": events_url,
        },
        {"label": _("Active rules"), "value": intcomma(data["active_rules"]), "icon": "zap",
         "href": _url("automation:rules") if manager else ""},
    ]
    # Built when the snapshot was computed; a snapshot stored before its language was offered
    # (or before snapshots kept charts) gets them built now.
    figures = data.get("figures", {}).get(translation.get_language()) or dashboard_figures(data)
    return {
        "kpis": kpis,
        "figures": figures,
        "dash": data,
        "funnel_url": _url("leads:funnels") if data["funnel"] is None else reverse("leads:funnel_detail", kwargs={"funnel_id": data["funnel"]["id"]}),
        "events_url": events_url,
        "hot_url": hot_url,
    }


def dashboard_figures(data: dict) -> dict:
    """The dashboard's charts (Plotly dicts ready for ``includes/chart.html``) from its figures,
    labelled in the active language. They depend on nothing else: not the viewer, not the time."""
    warm, hot = data["warm"], data["hot"]
    temps = data["contacts"]["temperatures"]
    temperature_links = [contact_list_url(temperature=name) for name in ("cold", "warm", "hot")]
    # The contact list has no score-range filter; the hot-leads list does (all staff may open it).
    bucket_links = []
    for low, high, _count in data["buckets"]:
        params: dict = {"temperature": "any", "status": "any"}
        if low < 0:
            params["score_max"] = -1
        else:
            params["score_min"] = low
            if high <= data["tail_start"]:
                params["score_max"] = high - 1
        bucket_links.append(_url("leads:hot", **params))
    labelled_buckets = []
    for low, high, count in data["buckets"]:
        if low < 0:
            labelled_buckets.append(("< 0", count, low))
        elif high > data["tail_start"]:
            labelled_buckets.append((f"≥ {low}", count, low))
        else:
            labelled_buckets.append((f"{low}–{high - 1}" if high - low > 1 else str(low), count, low))
    tag_names = [name for name, _ in data["top_tags"]]
    funnel_links = [contact_list_url(stage=stage_id) for stage_id, _, _ in data["funnel_stages"]]
    return {
        "temperature": charts.temperature_bars(temps, links=temperature_links),
        "scores": charts.score_buckets(labelled_buckets, warm=warm, hot=hot, links=bucket_links),
        "tags": charts.horizontal_bars(tag_names, [n for _, n in data["top_tags"]],
                                       links=[contact_list_url(tag=name) for name in tag_names]) if tag_names else None,
        # Current counts, drawn as bars, not a funnel shape: a contact counts only in the stage it
        # is in now, so later stages can hold more than earlier ones; conversion is on the report.
        "funnel": charts.horizontal_bars(
            [name for _, name, _ in data["funnel_stages"]], [count for _, _, count in data["funnel_stages"]],
            links=funnel_links, unit=_("contacts in this stage now"),
        ) if data["funnel_stages"] else None,
        "events": charts.events_over_time(
            data["event_days"],
            {EVENT_TYPE_LABELS.get(name, name): values for name, values in data["event_series"].items()},
        ) if data["event_series"] else None,
    }


def _figures_by_language(data: dict) -> dict[str, dict]:
    """``dashboard_figures`` in every language the site offers, keyed by language code."""
    figures = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            figures[code] = dashboard_figures(data)
    return figures
