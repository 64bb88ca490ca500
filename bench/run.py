"""``python -m bench.run --contacts N`` (``make bench CONTACTS=N``): the benchmark.

1. A separate database on the same server — ``marketing_hub_bench`` on the embedded PostgreSQL, or
   ``<name>_bench`` next to ``DATABASE_URL`` — migrated, and filled by ``demo.datagen``
   unless it already holds data of that size from the same generator (a marker table says so).
2. The measurements of ``docs/benchmark.md``, each the median of ``--runs`` warm runs: segment
   counts (``segments.services.segment_count`` vs hand-written SQL, interleaved, at least 7 runs)
   and the full segment refresh, every page staff wait for (p95 per URL, ``bench.pages``), full
   recomputes (app vs SQL), the background jobs on every contact (``bench.jobs``), end-to-end
   ingestion with a real worker (PostgreSQL and Redis brokers, with webhooks, the tracking
   intake alternating with the events API), webhooks, 20 concurrent users against the server as
   ``make run`` starts it (quiet and while ingesting), sustained ingestion for minutes with the
   event-to-effect latency (``bench.sustained``), table sizes.
3. One JSON document on stdout and in ``bench/results/latest.json``. Progress goes to stderr.

It asserts nothing: a figure that cannot be measured is ``null`` with a ``reason``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GENERATOR = ROOT / "demo" / "datagen.py"
PARTS = ("segments", "views", "recompute", "jobs", "ingest", "tracking", "webhooks", "load", "sustained", "sizes")
SEGMENT_MIN_RUNS = 7
# The sustained part: five minutes of load per run at the product's size, 20 s below it (the
# everyday 100k run, generation and every part included, stays under 15 minutes), offering a
# steady rate — a shop's stream, which this 2-core machine keeps up with; a closed loop measures
# its own backlog.
SUSTAINED_FULL_FROM = 1_000_000
SUSTAINED_SECONDS_FULL = 300.0
SUSTAINED_SECONDS_SMALL = 20.0
SUSTAINED_RATE = 1000.0


def say(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- The bench database -------------------------------------------------------------------------
def bench_database_name() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        from urllib.parse import urlparse

        name = urlparse(url).path.lstrip("/") or "postgres"
        return f"{name}_bench"
    return "marketing_hub_bench"


_SIGNATURE: str | None = None


def generator_signature() -> str:
    """The generator's hash as it was when this run started (the code that generates the data)."""
    global _SIGNATURE
    if _SIGNATURE is None:
        _SIGNATURE = hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:16]
    return _SIGNATURE


def _server_connection(settings_db: dict, dbname: str):
    import psycopg

    kwargs = {"dbname": dbname, "user": settings_db.get("USER") or None, "host": settings_db.get("HOST") or None,
              "password": settings_db.get("PASSWORD") or None, "port": settings_db.get("PORT") or None,
              "autocommit": True}
    return psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None or k == "autocommit"})


def prepare_database(contacts: int, *, regenerate: bool) -> tuple[str, bool]:
    """Create (or keep) the bench database before Django connects to it. True when its data can
    be reused: the marker names the same size and generator."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    name = db["NAME"]
    maintenance = "postgres"
    with _server_connection(db, maintenance) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
    reusable = False
    if exists and not regenerate:
        try:
            with _server_connection(db, name) as conn:
                row = conn.execute("SELECT contacts, generator FROM bench_meta WHERE id = 1").fetchone()
                reusable = bool(row) and row[0] == contacts and row[1] == generator_signature()
        except Exception:
            reusable = False
    if exists and not reusable:
        say(f"dropping database {name} (different size or generator)")
        with _server_connection(db, maintenance) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        exists = False
    if not exists:
        with _server_connection(db, maintenance) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    return name, reusable


# --- Timing helpers -----------------------------------------------------------------------------
class _Rollback(Exception):
    pass


def timed_ms(fn: Callable[[], Any], runs: int, *, setup: Callable[[], Any] | None = None,
             rollback: bool = False, warmup: int = 1) -> tuple[float, list[float], Any]:
    """Median wall time of ``fn`` over ``runs`` runs after ``warmup`` untimed ones. With
    ``rollback`` every run (and its ``setup``) happens in a transaction that is rolled back, so
    every run starts from the same data."""
    from django.db import transaction

    samples: list[float] = []
    result: Any = None
    for i in range(warmup + runs):
        try:
            with transaction.atomic():
                if setup:
                    setup()
                started = time.perf_counter()
                result = fn()
                elapsed = (time.perf_counter() - started) * 1000
                if rollback:
                    raise _Rollback
        except _Rollback:
            pass
        if i >= warmup:
            samples.append(elapsed)
    return statistics.median(samples), samples, result


def timed_pair_ms(app: Callable[[], Any], sql: Callable[[], Any], runs: int, *, rollback: bool = False,
                  warmup: int = 1) -> tuple[tuple[float, Any], tuple[float, Any]]:
    """Medians of the app and its SQL twin measured **interleaved** (app, SQL, app, SQL, …) so
    that the load of other processes on the machine hits both sides alike."""
    app_samples: list[float] = []
    sql_samples: list[float] = []
    app_result: Any = None
    sql_result: Any = None
    for _ in range(warmup + runs):
        app_ms, _, app_result = timed_ms(app, 1, rollback=rollback, warmup=0)
        sql_ms, _, sql_result = timed_ms(sql, 1, rollback=rollback, warmup=0)
        app_samples.append(app_ms)
        sql_samples.append(sql_ms)
    return ((statistics.median(app_samples[warmup:]), app_result),
            (statistics.median(sql_samples[warmup:]), sql_result))


class StatementPlans:
    """``connection.execute_wrapper`` that records every statement the app runs and, for the
    SELECTs, their ``EXPLAIN (ANALYZE, BUFFERS)`` on the same connection and transaction (so
    session settings the app sets, e.g. ``SET LOCAL``, shape the recorded plan too)."""

    def __init__(self) -> None:
        self.statements: list[dict[str, Any]] = []

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        entry: dict[str, Any] = {"sql": sql if params is None else _inline(context["connection"], sql, params)}
        if not many and sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raw = context["connection"].connection.cursor()
            try:
                raw.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                entry["plan"] = "\n".join(row[0] for row in raw.fetchall())
            finally:
                raw.close()
        self.statements.append(entry)
        return result


def _inline(connection: Any, sql: str, params: Any) -> str:
    """The statement with its parameters bound as PostgreSQL literals (for reading the plans)."""
    try:
        return connection.ops.compose_sql(sql, params)
    except Exception:  # a statement the client cannot bind alone: keep the parameters beside it
        return f"{sql} -- params {params!r}"


def sql_value(sql: str, params: Any = None) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else cursor.rowcount


def sql_run(sql: str, params: Any = None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def explain(sql: str, params: Any = None) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def figure(name: str, app_ms: float | None, sql_ms: float | None, **extra: Any) -> dict:
    ratio = round(app_ms / sql_ms, 2) if app_ms is not None and sql_ms else None
    return {"name": name, "app_ms": _r(app_ms), "sql_ms": _r(sql_ms), "ratio": ratio, **extra}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2 if value < 100 else 1)


def missing(name: str, reason: str, **extra: Any) -> dict:
    say(f"{name}: not measured — {reason}")
    return {"name": name, "value": None, "reason": reason, **extra}


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


# --- 1. Segment counts --------------------------------------------------------------------------
def measure_segments(runs: int, plans: dict) -> list[dict]:
    """Each case: the app's real count — ``segments.services.segment_count`` (what the live
    count, the API preview and saving call) — against the hand-written SQL, interleaved."""
    from django.db import connection

    # local import: main() chooses the bench database and sets Django up first
    from bench.cases import SEGMENT_CASES
    from segments.services import segment_count

    out = []
    for case in SEGMENT_CASES:
        try:
            def app(definition: dict = case.definition) -> int:
                return segment_count(definition)

            (app_ms, app_count), (sql_ms, sql_count) = timed_pair_ms(app, lambda sql=case.sql: sql_value(sql), runs)
            recorder = StatementPlans()
            with connection.execute_wrapper(recorder):
                app()
            plans[case.name] = {
                "definition": case.definition,
                # every statement segment_count ran (name look-ups, SET LOCAL, the count) with plans
                "app_statements": recorder.statements,
                "app_sql": next((st["sql"] for st in reversed(recorder.statements) if "plan" in st), None),
                "app_plan": next((st["plan"] for st in reversed(recorder.statements) if "plan" in st), None),
                "sql": " ".join(case.sql.split()),
                "sql_plan": explain(case.sql),
            }
            result = figure(case.name, app_ms, sql_ms, description=case.description, count=sql_count,
                            counts_agree=app_count == sql_count)
            if app_count != sql_count:
                # two different answers are not a speed comparison: no ratio, and why
                result.update(app_count=app_count, ratio=None,
                              reason=f"the counts disagree: app {app_count}, hand-written SQL {sql_count}")
            say(f"{case.name}: app {app_ms:.1f} ms, SQL {sql_ms:.1f} ms, count {sql_count}"
                + ("" if app_count == sql_count else f" (app counted {app_count}!)"))
            out.append(result)
        except Exception as exc:
            out.append(missing(case.name, f"{type(exc).__name__}: {exc}"))
            traceback.print_exc()
    return out


# --- 2. Views -----------------------------------------------------------------------------------
def _view_urls(contacts: int, segment_ids: tuple[int, ...] = ()) -> dict[str, list[str]]:
    """The contact list's, cards' and hot leads' URLs (bench/pages.py): every filter and sort with
    values that exist in the data. The load part picks its pages from them too."""
    from django.urls import reverse

    # local import: main() chooses the bench database and sets Django up first
    from bench import pages

    return {
        "contact_list_p95_ms": pages.contact_list_urls(segment_ids=segment_ids),
        "contact_card_p95_ms": [reverse("contacts:card", kwargs={"contact_id": pk}) for pk in pages.card_contact_ids()],
        "hot_leads_p95_ms": pages.hot_leads_urls(),
    }


def measure_views(contacts: int) -> list[dict]:
    """Every page a member of staff waits for, p95 per URL, the worst URL's p95 the figure
    (bench/pages.py), and the dashboard's uncached computation. For each figure's worst URL: its
    time in SQL (statements and milliseconds) and the plans of its slowest statements."""
    # local import: main() chooses the bench database and sets Django up first
    from bench import pages
    from demo.users import ensure_demo_users

    ensure_demo_users()
    started = time.perf_counter()
    out: list[dict] = []
    try:
        with pages.page_fixtures(say) as fixtures:
            clients = {user: pages.client_for(user) for user in ("admin", "sales")}
            probes = pages.page_probes(clients, fixtures)
            for name, results in probes.items():
                if name == "dashboard_p95_ms":
                    # computed right before the page: the page then reads a fresh snapshot
                    out.append(_measure_dashboard_compute(pages))
                out.append(_measure_page_figure(pages, name, results, clients, fixtures.notes))
    except Exception as exc:
        traceback.print_exc()
        measured = {figure["name"] for figure in out}
        out += [missing(name, f"{type(exc).__name__}: {exc}") for name in (*pages.MEASURES, "dashboard_compute_ms")
                if name not in measured]
    # the owners and segment members the part wrote and removed: cleaned up, not counted
    vacuum(["contacts_contact", "segments_segmentmember"], "after the views")
    say(f"views: {len(out)} figures in {time.perf_counter() - started:.0f} s")
    return out


def _measure_page_figure(pages: Any, name: str, results: list, clients: dict, notes: list[str]) -> dict:
    from django.db import connection

    try:
        rounds, seconds = pages.run_probes(clients, results, budget_s=pages.BUDGET_S[name])
        result = pages.page_figure(name, results, measures=pages.MEASURES[name], rounds=rounds, seconds=seconds)
        if notes:
            result["setup"] = notes
        if result.get("value") is not None:
            worst = next(r for r in results if r.probe.label == result["worst_url"])
            client = clients[worst.probe.user]
            profile = pages.sql_share(client, worst.probe)
            recorder = StatementPlans()
            with connection.execute_wrapper(recorder):
                pages.fetch(client, worst.probe)
            profile["slowest_statements"] = pages.slowest_statements(recorder.statements)
            result["worst_url_profile"] = profile
        for line in pages.log_lines(result):
            say(line)
        if "worst_url_profile" in result:
            profile = result["worst_url_profile"]
            slowest = profile["slowest_statements"][0]["ms"] if profile["slowest_statements"] else None
            say(f"    worst URL once more: {profile['request_ms']} ms, {profile['sql_ms']} ms of it in "
                f"{profile['queries']} statements; slowest statement {slowest} ms")
        return result
    except Exception as exc:
        traceback.print_exc()
        return missing(name, f"{type(exc).__name__}: {exc}")


def _measure_dashboard_compute(pages: Any) -> dict:
    from django.db import connection

    try:
        result = pages.measure_dashboard_compute()
        recorder = StatementPlans()
        with connection.execute_wrapper(recorder):
            pages.dashboard_refresh()
        result["slowest_statements"] = pages.slowest_statements(recorder.statements)
        say(f"dashboard_compute_ms: median {result['value']} ms over {result['runs']} runs {result['samples_ms']}")
        return result
    except Exception as exc:
        traceback.print_exc()
        return missing("dashboard_compute_ms", f"{type(exc).__name__}: {exc}")


# --- 4. Recomputes ------------------------------------------------------------------------------
SCORE_SQL = """
CREATE TEMP TABLE bench_ledger ON COMMIT DROP AS
    SELECT contact_id, sum(delta)::int AS total FROM leads_scorechange GROUP BY contact_id;
UPDATE contacts_contact c SET score = l.total FROM bench_ledger l
    WHERE c.id = l.contact_id AND c.score <> l.total;
UPDATE contacts_contact c SET score = 0
    WHERE c.score <> 0 AND NOT EXISTS (SELECT 1 FROM bench_ledger l WHERE l.contact_id = c.id);
"""
# 10% of the scores wrong, as after a lost update or a rule edit: both sides must repair them.
SCORE_DIRTY = "UPDATE contacts_contact SET score = score + 7 WHERE id % 10 = 0"

def tier_sql() -> tuple[str, dict[str, Any]]:
    """The hand-written full tier recompute: one statement computing every contact's metric and
    tier, writing only the rows whose tier or metric changes, and logging tier changes. Columns
    other areas add to their models later are filled with the model defaults."""
    # local import: main() chooses the bench database and sets Django up first
    from demo.datagen import _insert_select, _positional
    from loyalty.models import ContactTier, Program, TierChange

    # the tiers are a handful of constants: a CASE, highest threshold first
    tier_rows = Program.objects.get(name="Klub Stylu").tiers.all()
    if hasattr(tier_rows, "active"):
        tier_rows = tier_rows.active()  # retired tiers take nobody
    tiers = list(tier_rows.order_by("-min").values_list("min", "id"))
    tier_case = "CASE " + " ".join(f"WHEN m.v >= {minimum} THEN {tier_id}" for minimum, tier_id in tiers) + " END"
    upsert, upsert_defaults = _insert_select(
        ContactTier,
        {"program_id": "%(p)s", "contact_id": "contact_id", "tier_id": "tier_id", "metric_value": "v",
         "since": "now()", "version": "1"},
        """FROM changed ON CONFLICT (program_id, contact_id) DO UPDATE
           SET tier_id = EXCLUDED.tier_id, metric_value = EXCLUDED.metric_value,
               since = CASE WHEN loyalty_contacttier.tier_id IS DISTINCT FROM EXCLUDED.tier_id
                            THEN EXCLUDED.since ELSE loyalty_contacttier.since END
           RETURNING 1""",
    )
    log, log_defaults = _insert_select(
        TierChange,
        {"program_id": "%(p)s", "contact_id": "ch.contact_id", "from_tier": "coalesce(o.name, '')",
         "to_tier": "coalesce(n.name, '')", "reason": "'bench'", "created_at": "now()",
         **({"direction": "CASE WHEN n.id IS NULL OR n.min < o.min THEN -1 ELSE 1 END"}
            if any(f.column == "direction" for f in TierChange._meta.concrete_fields) else {})},
        """FROM changed ch LEFT JOIN loyalty_tier o ON o.id = ch.old_tier LEFT JOIN loyalty_tier n ON n.id = ch.tier_id
           WHERE ch.tier_id IS DISTINCT FROM ch.old_tier AND (SELECT count(*) FROM up) >= 0""",
    )
    sql = f"""
    WITH metric AS (
        SELECT c.id AS contact_id, coalesce(ct.score, 0)::numeric(14, 2) AS v
        FROM contacts_contact c
        LEFT JOIN contacts_contacttag ct ON ct.contact_id = c.id AND ct.tag_id = %(tag)s
    ), target AS (
        SELECT m.contact_id, m.v, {tier_case} AS tier_id FROM metric m
    ), changed AS MATERIALIZED (
        SELECT t.*, cur.tier_id AS old_tier FROM target t
        LEFT JOIN loyalty_contacttier cur ON cur.program_id = %(p)s AND cur.contact_id = t.contact_id
        WHERE cur.contact_id IS NULL OR cur.tier_id IS DISTINCT FROM t.tier_id OR cur.metric_value <> t.v
    ), up AS ({upsert})
    {log}
    """
    # name the defaults' placeholders in order: first the upsert's, then the log's
    defaults = upsert_defaults + log_defaults
    sql = _positional(sql, len(defaults))
    return sql, {f"_d{i}": v for i, v in enumerate(defaults)}


# 10% of the tiers wrong (e.g. after a threshold change): both sides must repair them.
TIER_DIRTY = "UPDATE loyalty_contacttier SET tier_id = NULL WHERE contact_id % 10 = 0"


def measure_recomputes(runs: int, plans: dict) -> list[dict]:
    out = []
    from django.db import connection

    # local import: main() chooses the bench database and sets Django up first
    from contacts.models import Tag
    from leads.scoring import score_recompute_all
    from loyalty.models import Program
    from loyalty.services import program_recompute

    # lead score -------------------------------------------------------------------------------
    try:
        def app_score() -> int:
            with connection.cursor() as cursor:
                return score_recompute_all(cursor)

        app_ms, _, app_fixed = timed_ms(app_score, runs, setup=lambda: sql_run(SCORE_DIRTY), rollback=True)
        sql_ms, _, _ = timed_ms(lambda: sql_run(SCORE_SQL), runs, setup=lambda: sql_run(SCORE_DIRTY), rollback=True)
        out.append(figure("score_recompute", app_ms, sql_ms, description="lead score of every contact from the ledger; 10% of scores wrong",
                          rows_fixed=app_fixed))
        say(f"score_recompute: app {app_ms:.0f} ms, SQL {sql_ms:.0f} ms")
    except Exception as exc:
        out.append(missing("score_recompute", f"{type(exc).__name__}: {exc}"))
        traceback.print_exc()

    # loyalty tiers ----------------------------------------------------------------------------
    try:
        program = Program.objects.get(name="Klub Stylu")
        tag_id = Tag.objects.get(key="purchase").id
        app_ms, _, app_result = timed_ms(lambda: program_recompute(program, reason="bench"), runs,
                                         setup=lambda: sql_run(TIER_DIRTY), rollback=True)
        tier_statement, tier_defaults = tier_sql()
        sql_ms, _, _ = timed_ms(lambda: sql_run(tier_statement, {"p": program.id, "tag": tag_id, **tier_defaults}), runs,
                                setup=lambda: sql_run(TIER_DIRTY), rollback=True)
        out.append(figure("tier_recompute", app_ms, sql_ms, description="loyalty tier of every contact (PURCHASE tag score); 10% of tiers wrong",
                          rows_written=(app_result or {}).get("written") if isinstance(app_result, dict) else None))
        say(f"tier_recompute: app {app_ms:.0f} ms, SQL {sql_ms:.0f} ms")
    except Exception as exc:
        out.append(missing("tier_recompute", f"{type(exc).__name__}: {exc}"))
        traceback.print_exc()

    # Every run above made 10% of the rows wrong and rolled back: about a million dead row versions
    # that would make autovacuum rewrite the contact table during the next part (ingestion). Clean
    # up after ourselves (not counted) so each part measures its own work.
    vacuum(["contacts_contact", "loyalty_contacttier"], "after the recomputes")
    return out


def vacuum(tables: list[str], when: str) -> None:
    """VACUUM (ANALYZE) ``tables`` between measurements; timed for the log, not counted."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
    say(f"vacuumed {when} ({time.perf_counter() - started:.1f}s, not counted)")


def _measure_segment_refresh(runs: int) -> dict:
    # local import: main() chooses the bench database and sets Django up first
    from bench.cases import SEGMENT_CASES
    from segments.models import Segment
    from segments.services import segment_refresh

    case = next(c for c in SEGMENT_CASES if c.name == "segment_count_nested_not")
    try:
        segment, _ = Segment.objects.get_or_create(name="bench: nested", defaults={"definition": case.definition})
        Segment.objects.filter(pk=segment.pk).update(definition=case.definition)
        segment.refresh_from_db()
        sql_run("DELETE FROM segments_segmentmember WHERE segment_id = %s", [segment.pk])

        def app() -> Any:
            return segment_refresh(segment.pk)

        member_sql = " ".join(case.sql.split()).replace("SELECT count(*) FROM contacts_contact c", "SELECT c.id FROM contacts_contact c", 1)
        sql = f"""
        WITH target AS MATERIALIZED ({member_sql}),
        ins AS (INSERT INTO segments_segmentmember (segment_id, contact_id, added_at)
                SELECT %(s)s, id, now() FROM target ON CONFLICT DO NOTHING RETURNING contact_id),
        del AS (DELETE FROM segments_segmentmember m WHERE m.segment_id = %(s)s
                AND NOT EXISTS (SELECT 1 FROM target t WHERE t.id = m.contact_id) RETURNING m.contact_id),
        told AS (INSERT INTO core_outboxmessage (type, contact_id, segment_id, data)
                 SELECT 'segment.entered', contact_id, %(s)s, '{{}}'::jsonb FROM ins
                 UNION ALL SELECT 'segment.exited', contact_id, %(s)s, '{{}}'::jsonb FROM del),
        size AS (INSERT INTO segments_segmentsize (segment_id, count, measured_at)
                 SELECT %(s)s, count(*), now() FROM target RETURNING count)
        UPDATE segments_segment SET count = (SELECT count FROM size), refreshed_at = now(), version = version + 1
        WHERE id = %(s)s AND (SELECT count(*) FROM ins) >= 0 AND (SELECT count(*) FROM del) >= 0
        """
        # the refresh writes every member (the segment starts empty in each rolled-back run)
        (app_ms, _), (sql_ms, _) = timed_pair_ms(app, lambda: sql_run(sql, {"s": segment.pk}), runs, rollback=True)
        say(f"segment_refresh: app {app_ms:.0f} ms, SQL {sql_ms:.0f} ms")
        return figure("segment_refresh", app_ms, sql_ms, description="full refresh of a saved segment (" + case.description + ") from empty")
    except Exception as exc:
        traceback.print_exc()
        return missing("segment_refresh", f"{type(exc).__name__}: {exc}")
    finally:
        # gone again: left, the rules engine would re-evaluate it for every batch of the ingestion
        # parts (a 21st saved segment, with no members)
        Segment.objects.filter(name="bench: nested").delete()


# --- 3. Ingestion -------------------------------------------------------------------------------
def measure_ingest(database_name: str, total: int, runs: int = 3) -> list[dict]:
    # local import: main() chooses the bench database and sets Django up first
    from bench.ingest import redis_url, run_ingest
    from core.models import ApiKey

    _, ingest_key = ApiKey.issue(name="bench ingest", scope=ApiKey.SCOPE_INGEST)
    _, admin_key = ApiKey.issue(name="bench admin", scope=ApiKey.SCOPE_ADMIN)
    from django.db import connection, connections

    # 20,000 active contacts spread over the whole table by a hash of the id (deterministic): an
    # arithmetic sample (every 50th id) would put them all in one residue class — one engine
    # partition — which no real traffic does.
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM contacts_contact WHERE NOT is_anonymous ORDER BY md5(id::text) LIMIT 20000")
        emails = [row[0] for row in cursor.fetchall()]

    connections.close_all()
    out = []
    brokers = [("postgres", None, "ingest_events_per_s")]
    redis = redis_url()
    if redis:
        brokers.append(("redis", redis, "ingest_events_per_s_redis"))
    else:
        out.append(missing("ingest_events_per_s_redis", "no Redis answering at redis://127.0.0.1:6379/0"))
    for broker, url, name in brokers:
        try:
            say(f"ingest over {broker}: {runs} × {total:,} events in batches of 1,000 …")
            results = run_ingest(broker=broker, broker_url=url, database_name=database_name, ingest_key=ingest_key,
                                 admin_key=admin_key, emails=emails, total=total, runs=runs)
            for number, result in enumerate(results, 1):
                say(f"{name} run {number}: {result.events_per_s:,.0f} events/s ({result.seconds:.1f}s; POSTs done "
                    f"after {result.post_seconds:.1f}s; memberships settled after "
                    f"{result.as_dict()['memberships_settled_seconds']}s)")
            # the median run: the first one on freshly generated data reads its contacts from disk
            median = sorted(results, key=lambda result: result.events_per_s)[len(results) // 2]
            say(f"{name}: median {median.events_per_s:,.0f} events/s over {len(results)} runs")
            out.append({"name": name, "value": round(median.events_per_s), "unit": "events/s", **median.as_dict(),
                        "runs": [result.as_dict() for result in results]})
        except Exception as exc:
            traceback.print_exc()
            cause = _last_error_line(RESULTS / f"ingest-worker-{broker}.log")
            out.append(missing(name, f"{type(exc).__name__}: {exc}" + (f"; worker log: {cause}" if cause else "")
                               + f" (logs: bench/results/ingest-*-{broker}.log)"))
    out.append(_ingest_with_webhooks(database_name, total, runs, ingest_key, admin_key, emails))
    return out


def _ingest_with_webhooks(database_name: str, total: int, runs: int, ingest_key: str, admin_key: str,
                          emails: list[str]) -> dict:
    """ingest_events_per_s_webhooks: the same ingestion (database broker) with two active webhooks
    subscribed to every event type on a loopback receiver, so the outbox is fanned out and
    delivered while events flow. ``runs`` runs with the webhooks on and ``runs`` with them off
    alternate on the same servers (off, on, on, off, off, on, …: neither variant always goes
    first), and ``ratio_to_without`` compares the medians of the two; run-to-run drift of the
    machine and the data then falls on both sides alike.

    Every run sends its events to contacts of its own (the table in slices): the calls come from
    contacts crossing a threshold or entering a segment, which repeated runs on the same contacts
    do less and less (a fifth run made a tenth of the first one's calls), while a shop's new
    traffic keeps bringing such contacts."""
    # local import: main() chooses the bench database and sets Django up first
    from bench.ingest import Intake, make_batches, run_ingest
    from bench.webhooks import LOOPBACK, CountingReceiver, _cleanup, _webhook
    from webhooks.models import SUBSCRIBABLE_TYPES, Webhook

    name = "ingest_events_per_s_webhooks"
    receiver = CountingReceiver()
    hooks = [_webhook(receiver.url, list(SUBSCRIBABLE_TYPES)) for _ in range(2)]
    os.environ["MH_WEBHOOK_ALLOWED_NETS"] = LOOPBACK

    people = [row[0] for row in _rows("SELECT email FROM contacts_contact WHERE NOT is_anonymous "
                                      "ORDER BY md5(id::text || 'webhooks')")]
    per_run = min(len(emails), len(people) // (2 * runs + 1))

    def make(_emails: list[str], count: int, run_id: str) -> list[dict]:
        # run ids end in -<number>; the warm-up's (…w) takes the last slice
        number = int(run_id.rsplit("-", 1)[1]) if "-" in run_id else 2 * runs
        return make_batches(people[number * per_run:(number + 1) * per_run], count, run_id)

    calls_before: list[int] = []

    def before_run(number: int) -> str:
        on = number % 4 in (1, 2)
        Webhook.objects.filter(pk__in=[hook.pk for hook in hooks]).update(active=on)
        calls_before.append(receiver.count())
        return "postgres-webhooks" if on else "postgres-webhooks-off"

    try:
        say(f"ingest with two webhooks: {runs} × {total:,} events with them, {runs} without, alternating, "
            f"{per_run:,} contacts of its own per run …")
        results = run_ingest(broker="postgres-webhooks", broker_url=None, database_name=database_name,
                             ingest_key=ingest_key, admin_key=admin_key, emails=emails, total=total, runs=2 * runs,
                             before_run=before_run, intake=Intake(make=make))
        calls = [after - before for before, after in zip(calls_before, [*calls_before[1:], receiver.count()], strict=True)]
        with_hooks = [result for result in results if result.broker == "postgres-webhooks"]
        without_hooks = [result for result in results if result.broker != "postgres-webhooks"]
        median = sorted(with_hooks, key=lambda result: result.events_per_s)[len(with_hooks) // 2]
        base = statistics.median(result.events_per_s for result in without_hooks)
        ratio = round(median.events_per_s / base, 2) if base else None
        for result, made in zip(results, calls, strict=True):
            on = result.broker == "postgres-webhooks"
            say(f"{name} {'with' if on else 'without'}: {result.events_per_s:,.0f} events/s" + (f", {made:,} calls" if on else ""))
        say(f"{name}: median {median.events_per_s:,.0f} events/s, {base:,.0f} without ({ratio}×); "
            f"{receiver.count():,} calls received")
        return {"name": name, "value": round(median.events_per_s), "unit": "events/s", "ratio_to_without": ratio,
                "target_ratio": 0.9, "without_median_events_per_s": round(base), "contacts_per_run": per_run,
                "webhook_calls_received": receiver.count(), **median.as_dict(),
                "runs": [{**result.as_dict(), "webhook_calls": made} for result, made in zip(results, calls, strict=True)]}
    except Exception as exc:
        traceback.print_exc()
        return missing(name, f"{type(exc).__name__}: {exc} (logs: bench/results/ingest-*-postgres-webhooks.log)")
    finally:
        os.environ.pop("MH_WEBHOOK_ALLOWED_NETS", None)
        _cleanup([hook.pk for hook in hooks])
        receiver.stop()


def measure_tracking(database_name: str, total: int, runs: int) -> list[dict]:
    """track_batch_events_per_s (the ingestion workload as Segment /v1/batch messages, 30% by
    anonymous visitors, merged by identifies along the way), its ratio to the events API, and
    identity_merge_ms (bench/tracking.py). The ratio's two sides are measured here, alternating
    on the same servers (events API, intake, intake, events API, …: neither always goes first),
    so the machine's drift falls on both alike; ``runs`` runs each."""
    from django.db import connections

    # local import: main() chooses the bench database and sets Django up first
    from bench import tracking
    from bench.ingest import Intake, make_batches, run_ingest
    from core.models import ApiKey
    from tracking.services import source_issue

    _, admin_key = ApiKey.issue(name="bench tracking admin", scope=ApiKey.SCOPE_ADMIN)
    _, ingest_key = ApiKey.issue(name="bench tracking ingest", scope=ApiKey.SCOPE_INGEST)
    _, write_key = source_issue(name="bench shop", kind="server")
    emails = [row[0] for row in _rows("SELECT email FROM contacts_contact WHERE NOT is_anonymous "
                                      "ORDER BY md5(id::text) LIMIT 20000")]
    connections.close_all()
    name = "track_batch_events_per_s"

    def segment_workload(emails: list[str], total: int, run_id: str) -> list[dict]:
        return tracking.segment_batches(make_batches(emails, total, run_id), run_id)

    intake = Intake(path="/v1/batch", make=segment_workload, key=write_key,
                    after=lambda port: tracking.merge_latency(port, write_key, admin_key, emails, uuid.uuid4().hex[:8]))

    def before_run(number: int) -> str:
        return "tracking" if number % 4 in (1, 2) else "events-api"

    try:
        say(f"tracking intake: {runs} × {total:,} events as /v1/batch messages ({tracking.ANONYMOUS_SHARE:.0%} "
            f"anonymous), alternating with {runs} × the same events to /api/v1/events …")
        results = run_ingest(broker="postgres-tracking", broker_url=None, database_name=database_name,
                             ingest_key=ingest_key, admin_key=admin_key, emails=emails, total=total, runs=2 * runs,
                             before_run=before_run, intakes={"tracking": intake})
        for result in results:
            say(f"{name} {result.broker}: {result.events_per_s:,.0f} events/s ({result.seconds:.1f}s; CPU s "
                + ", ".join(f"{role} {seconds}" for role, seconds in (result.cpu_seconds or {}).items()) + ")")
        track = [result for result in results if result.broker == "tracking"]
        api = [result for result in results if result.broker != "tracking"]
        median = sorted(track, key=lambda result: result.events_per_s)[len(track) // 2]
        base = statistics.median(result.events_per_s for result in api)
        ratio = round(median.events_per_s / base, 2) if base else None
        say(f"{name}: median {median.events_per_s:,.0f} events/s, /api/v1/events {base:,.0f} alternating ({ratio}×)")
        out: list[dict] = [{
            "name": name, "value": round(median.events_per_s), "unit": "events/s", "target_ratio": 0.9,
            "ratio_to_events_api": ratio, "events_api_median_events_per_s": round(base),
            "anonymous_share": tracking.ANONYMOUS_SHARE, **median.as_dict(),
            "runs": [result.as_dict() for result in results]}]
        merge = intake.after_result or {}
        say(f"identity_merge_ms: p95 {merge.get('p95_ms')} ms over {merge.get('samples')} visitors of "
            f"{tracking.MERGE_EVENTS} events")
        out.append({"name": "identity_merge_ms", "value": merge.get("p95_ms"), "unit": "ms (p95)",
                    "events_per_visitor": tracking.MERGE_EVENTS,
                    "measures": "identify sent → the visitor's anonymous profile merged by the worker", **merge})
    except Exception as exc:
        traceback.print_exc()
        out = [missing(name, f"{type(exc).__name__}: {exc} (logs: bench/results/ingest-*-postgres-tracking.log)"),
               missing("identity_merge_ms", f"not measured: {type(exc).__name__}")]
    finally:
        # The visitors who never identified leave anonymous profiles: gone, so that the other parts'
        # hand-written SQL and the app count the same contacts (what they merged into stays, as
        # the ingest part's events do).
        from contacts.merging import anonymous_profiles_purge  # local import: Django is set up by main()

        purged = anonymous_profiles_purge(before=datetime.now(UTC) + timedelta(days=1))
        say(f"tracking: {purged:,} anonymous profiles of the run removed")
    return out


def measure_webhooks(database_name: str) -> list[dict]:
    """webhook_fanout_per_s and hot_lead_alert_latency_s (bench/webhooks.py)."""
    # local import: main() chooses the bench database and sets Django up first
    from bench import webhooks
    from core.models import ApiKey

    _, ingest_key = ApiKey.issue(name="bench webhooks ingest", scope=ApiKey.SCOPE_INGEST)
    _, admin_key = ApiKey.issue(name="bench webhooks admin", scope=ApiKey.SCOPE_ADMIN)
    emails = [row[0] for row in _rows("SELECT email FROM contacts_contact WHERE NOT is_anonymous ORDER BY md5(id::text) LIMIT 20000")]
    return webhooks.measure(database_name, emails, ingest_key, admin_key)


def measure_load(database_name: str, contacts: int) -> list[dict]:
    """concurrent_users_p95_ms (quiet and while ingesting): 20 logged-in users against the web
    server as `make run` starts it (bench/load.py)."""
    from django.urls import reverse

    # local import: main() chooses the bench database and sets Django up first
    from bench import load
    from core.models import ApiKey
    from demo.users import DEMO_USERS, ensure_demo_users

    ensure_demo_users()
    _, ingest_key = ApiKey.issue(name="bench load ingest", scope=ApiKey.SCOPE_INGEST)
    _, admin_key = ApiKey.issue(name="bench load admin", scope=ApiKey.SCOPE_ADMIN)
    emails = [row[0] for row in _rows("SELECT email FROM contacts_contact WHERE NOT is_anonymous ORDER BY md5(id::text) LIMIT 20000")]
    views = _view_urls(contacts)
    # 200 contacts spread over the table by a hash of the id: rich and poor cards alike
    cards = [reverse("contacts:card", kwargs={"contact_id": row[0]})
             for row in _rows("SELECT id FROM contacts_contact ORDER BY md5(id::text) LIMIT 200")]
    urls = {"list": views["contact_list_p95_ms"], "card": cards, "hot": views["hot_leads_p95_ms"], "dashboard": ["/"]}
    from django.db import connections

    connections.close_all()
    try:
        return load.measure(database_name, users=DEMO_USERS, urls=urls, emails=emails, ingest_key=ingest_key,
                            admin_key=admin_key, say=say)
    except Exception as exc:
        traceback.print_exc()
        return [missing(name, f"{type(exc).__name__}: {exc} (logs: bench/results/load-*.log)")
                for name in ("concurrent_users_p95_ms", "concurrent_users_p95_ms_ingesting",
                             "concurrent_users_p95_ms_saturated")]


def measure_sustained(database_name: str, seconds: float, runs: int, rate: float | None = None) -> list[dict]:
    """sustained_events_per_s and event_to_effect_p95_s (with the pages' p95 during the load):
    ingestion kept up for ``seconds``, ``runs`` times, closed loop or offering ``rate`` events/s
    (bench/sustained.py)."""
    from django.db import connections

    # local import: main() chooses the bench database and sets Django up first
    from bench import sustained

    try:
        out = sustained.measure(database_name, seconds=seconds, runs=runs, say=say, rate=rate)
    except Exception as exc:
        traceback.print_exc()
        return [missing(name, f"{type(exc).__name__}: {exc} (logs: bench/results/sustained-*.log)")
                for name in sustained.FIGURES]
    finally:
        connections.close_all()
    # every acknowledged event committed as the settings say (the ingest part's durability)
    out[0]["durability"] = durability()
    for result in out:
        say(f"{result['name']}: {result['value']} {result['unit']} (runs: "
            + ", ".join(str(run.get("events_per_s", run.get("p95_s", run.get("p95_ms")))) for run in result["runs"]) + ")")
    return out


def _rows(sql: str) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def _last_error_line(path: Path) -> str | None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.strip() for line in lines if "Error" in line and not line.startswith(" ")]
    return errors[-1][:300] if errors else None


# --- 5. Sizes -----------------------------------------------------------------------------------
SIZE_TABLES = [
    "contacts_contact", "contacts_contacttag", "contacts_tag", "automation_event", "automation_eventreceipt",
    "leads_scorechange", "contacts_consent", "contacts_consentchange", "leads_contactstage",
    "leads_stagetransition", "loyalty_contacttier", "segments_segmentmember", "automation_ruleapplication",
    "contacts_tagscorechange",
]


def measure_sizes() -> dict[str, dict]:
    sizes = {}
    for table in SIZE_TABLES:
        rows = sql_value(f"SELECT count(*) FROM {table}")
        size = sql_value(
            """SELECT coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = %s::regclass), 0)
                      + pg_total_relation_size(%s::regclass)""",
            [table, table],
        )
        sizes[table] = {"rows": rows, "bytes": int(size), "mb": round(int(size) / 1048576, 1)}
    sizes["database"] = {"bytes": int(sql_value("SELECT pg_database_size(current_database())"))}
    sizes["database"]["mb"] = round(sizes["database"]["bytes"] / 1048576, 1)
    return sizes


def machine() -> dict:
    ram = None
    try:
        with open("/proc/meminfo") as f:
            ram = round(int(f.readline().split()[1]) / 1048576, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "ram_gb": ram,
        "postgres": sql_value("SELECT version()").split(" on ")[0],
        "embedded_postgres": not os.environ.get("DATABASE_URL"),
        "postgres_settings": server_settings(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# The server settings the figures depend on: memory for caching and sorting, the planner's costs,
# JIT, and autovacuum (off, the statistics and the visibility map go stale as the parts write, and
# the plans with them). The embedded server `make bench` starts sets them (marketing_hub.embedded_db);
# a DATABASE_URL server brings its own.
SERVER_SETTINGS = ("shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "jit", "autovacuum",
                   "max_wal_size", "checkpoint_timeout")


def server_settings() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", [list(SERVER_SETTINGS)])
        return dict(cursor.fetchall())


def server_line(settings: dict[str, str]) -> str:
    line = "server: " + ", ".join(f"{name} {value}" for name, value in settings.items())
    if settings.get("autovacuum") == "off":
        line += " — autovacuum is off: statistics go stale as the parts write, and the plans with them"
    return line


# --- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="warm runs per figure (median)")
    parser.add_argument("--ingest-runs", type=int, default=3,
                        help="measured ingestion runs per broker (the median is the figure)")
    parser.add_argument("--ingest-events", type=int, default=None,
                        help="events posted per broker (default: 30,000 up to 200k contacts, else 60,000)")
    parser.add_argument("--sustained-seconds", type=float, default=None,
                        help="seconds of load per sustained-ingestion run (part sustained); default: "
                             f"{SUSTAINED_SECONDS_FULL:.0f} from {SUSTAINED_FULL_FROM:,} contacts, "
                             f"{SUSTAINED_SECONDS_SMALL:.0f} below")
    parser.add_argument("--sustained-runs", type=int, default=5, help="sustained-ingestion runs (the median is the figure)")
    parser.add_argument("--sustained-rate", type=float, default=SUSTAINED_RATE,
                        help="events/s the sustained part's clients offer on a schedule (open loop; default "
                             f"{SUSTAINED_RATE:,.0f}); 0: a closed loop, each client posting its next batch when "
                             "the last is answered")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: " + ",".join(PARTS))
    parser.add_argument("--only", default="", help="comma-separated parts to run (the others are skipped), e.g. "
                        "--only segments: the segment counts and segment_refresh")
    parser.add_argument("--regenerate", action="store_true", help="drop and regenerate the bench database")
    parser.add_argument("--out", default=str(RESULTS / "latest.json"))
    args = parser.parse_args(argv)
    # Stopped from outside (kill, a CI timeout): unwind, so each part's cleanup stops the servers and
    # workers it started and removes its webhooks (without this they outlived the bench).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.contacts < 100:
        parser.error("--contacts must be at least 100")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := (skip | only) - set(PARTS):
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}; parts are {', '.join(PARTS)}")
    if only:
        skip |= set(PARTS) - only

    started = time.perf_counter()
    generator_signature()
    os.environ["MH_DATABASE_NAME"] = bench_database_name()
    os.environ.setdefault("DEBUG", "0")  # no query log, cached templates: production-like timings
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing_hub.settings")
    sys.path.insert(0, str(ROOT))
    name, reusable = prepare_database(args.contacts, regenerate=args.regenerate)

    import django

    django.setup()
    from django.core.management import call_command

    say(f"database {name}: migrating")
    call_command("migrate", interactive=False, verbosity=0)
    generation: dict[str, Any]
    if reusable:
        generation = json.loads(sql_value("SELECT report::text FROM bench_meta WHERE id = 1"))
        generation["reused"] = True
        say(f"reusing the {args.contacts:,}-contact data (generated in {generation.get('seconds')} s)")
        # Earlier runs' ingestion rewrote contacts, tags and ledgers: vacuum what they wrote, as the
        # generator does after a fresh load, so a reused run starts where a fresh one would (and
        # autovacuum does not start in the middle of a measurement). Not counted.
        vacuum(["contacts_contact", "contacts_contacttag", "contacts_tagscorechange", "leads_scorechange",
                "leads_scoretrend", "automation_ruleapplication", "automation_event", "automation_eventreceipt",
                "loyalty_contacttier", "segments_segmentmember"], "the reused data")
    else:
        # local import: main() chooses the bench database and sets Django up first
        from demo import datagen

        say(f"generating {args.contacts:,} contacts …")
        report = datagen.generate(contacts=args.contacts, demo=False, echo=lambda line: say(line.strip()))
        generation = report.as_dict()
        generation["reused"] = False
        sql_run("CREATE TABLE IF NOT EXISTS bench_meta (id int PRIMARY KEY, contacts int, generator text, report jsonb, generated_at timestamptz)")
        sql_run(
            """INSERT INTO bench_meta VALUES (1, %s, %s, %s, now()) ON CONFLICT (id) DO UPDATE
               SET contacts = EXCLUDED.contacts, generator = EXCLUDED.generator, report = EXCLUDED.report,
                   generated_at = EXCLUDED.generated_at""",
            [args.contacts, generator_signature(), json.dumps(generation)],
        )
        say(f"generated in {generation['seconds']} s")

    plans: dict[str, Any] = {}
    figures: list[dict] = []
    if "segments" not in skip:
        # other processes load the machine: the segment pairs take at least 7 interleaved runs
        segment_runs = max(args.runs, SEGMENT_MIN_RUNS)
        figures += measure_segments(segment_runs, plans)
        figures.append(_measure_segment_refresh(segment_runs))
    if "views" not in skip:
        figures += measure_views(args.contacts)
    if "recompute" not in skip:
        figures += measure_recomputes(args.runs, plans)
    if "jobs" not in skip:
        from bench import jobs  # local import: main() chooses the bench database and sets Django up first

        figures += jobs.measure(args.runs)
    if "ingest" not in skip:
        # enough for a sustained rate (tens of seconds), small enough for the 10-minute budget at 100k
        total = args.ingest_events or (30_000 if args.contacts <= 200_000 else 60_000)
        figures += measure_ingest(name, total, args.ingest_runs)
    if "tracking" not in skip:
        total = args.ingest_events or (30_000 if args.contacts <= 200_000 else 60_000)
        figures += measure_tracking(name, total, args.ingest_runs)
    if "webhooks" not in skip:
        figures += measure_webhooks(name)
    if "load" not in skip:
        figures += measure_load(name, args.contacts)
    if "sustained" not in skip:
        # last: its load leaves events on the active contacts, as the ingest part's do
        seconds = args.sustained_seconds or (
            SUSTAINED_SECONDS_FULL if args.contacts >= SUSTAINED_FULL_FROM else SUSTAINED_SECONDS_SMALL)
        figures += measure_sustained(name, seconds, args.sustained_runs, args.sustained_rate or None)
    from django.db import connection

    connection.ensure_connection()
    sizes = measure_sizes() if "sizes" not in skip else {}
    document = {
        "benchmark": "marketing-hub",
        "contacts": args.contacts,
        "runs_per_figure": args.runs,
        "runs_per_segment_figure": max(args.runs, SEGMENT_MIN_RUNS),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "database": name,
        "generation": generation,
        "figures": figures,
        "sizes": sizes,
        "skipped": sorted(skip),
        "durability": durability(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    out.write_text(text + "\n")
    out.with_suffix(".plans.json").write_text(json.dumps(plans, ensure_ascii=False, indent=2) + "\n")
    print(text)
    say(server_line(document["machine"]["postgres_settings"]))
    say(f"durability: synchronous_commit = {document['durability']['synchronous_commit']} on the app's connections "
        f"(fsync {document['durability']['fsync']}); {document['durability']['asynchronous']}")
    for line in summary_lines(figures):
        print(line, file=sys.stderr)
    say(f"done in {document['duration_s']} s → {out}")
    return 0


def durability() -> dict:
    """The durability every figure ran with: the app's connections' ``synchronous_commit`` (the
    settings force it on), the server's ``fsync``, and which commits opt out."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('synchronous_commit'), current_setting('fsync')")
        synchronous_commit, fsync = cursor.fetchone()
    return {"synchronous_commit": synchronous_commit, "fsync": fsync,
            "asynchronous": "only the rules engine's batches and the membership drain commit asynchronously "
                            "(redone from stored events after a crash)"}


# Each figure's target (PRODUCT.md, the issues' "done when", docs/benchmark.md) as
# (what it says, whether a figure meets it); figures without one are listed without a verdict.
_RATIO_MAX = ("ratio ≤ 1.5", lambda figure: figure.get("ratio") is not None and figure["ratio"] <= 1.5)
# Page figures: the worst URL's p95 (bench/pages.py), every answer a 200, every URL one the page applies.
_PAGE_P95 = ("p95 < 150 ms (worst URL), all 200", lambda figure: figure["value"] < 150 and not figure.get("errors")
             and not figure.get("invalid_urls"))
TARGETS: dict[str, tuple[str, Any]] = {
    "segment_refresh": _RATIO_MAX,
    "score_recompute": _RATIO_MAX,
    "tier_recompute": _RATIO_MAX,
    **{name: _PAGE_P95 for name in (
        "contact_list_p95_ms", "contact_card_p95_ms", "hot_leads_p95_ms", "dashboard_p95_ms", "funnel_report_p95_ms",
        "tags_page_p95_ms", "segment_list_p95_ms", "segment_detail_p95_ms", "segment_preview_p95_ms",
        "segment_why_p95_ms")},
    "ingest_events_per_s": ("≥ 5,000 events/s", lambda figure: figure["value"] >= 5000),
    "ingest_events_per_s_redis": ("≥ 5,000 events/s", lambda figure: figure["value"] >= 5000),
    "ingest_events_per_s_webhooks": ("≥ 0.9× without webhooks",
                                     lambda figure: (figure.get("ratio_to_without") or 0) >= 0.9),
    "track_batch_events_per_s": ("≥ 0.9× /api/v1/events", lambda figure: (figure.get("ratio_to_events_api") or 0) >= 0.9),
    "webhook_fanout_per_s": ("≥ 1,000 messages/s", lambda figure: figure["value"] >= 1000),
    "hot_lead_alert_latency_s": ("p95 < 5 s", lambda figure: figure["value"] < 5),
    "sustained_events_per_s": ("≥ 6,000 events/s", lambda figure: figure["value"] >= 6000),
    # a probe that never completed ranks above every latency: a p95 that lands on one is null (FAIL)
    "event_to_effect_p95_s": ("p95 < 5 s", lambda figure: figure["value"] < 5),
    "concurrent_users_p95_ms": ("p95 < 500 ms, 0 errors", lambda figure: figure["value"] < 500 and not figure.get("errors")),
    "concurrent_users_p95_ms_ingesting": ("p95 < 500 ms, 0 errors",
                                          lambda figure: figure["value"] < 500 and not figure.get("errors")),
}


def _target(name: str) -> tuple[str, Any] | None:
    if name.startswith("segment_count_"):
        return _RATIO_MAX
    return TARGETS.get(name)


def summary_lines(figures: list[dict]) -> list[str]:
    """A short table of every figure: value, target and whether it met it (stderr, beside the JSON)."""
    rows = [("figure", "value", "target", "")]
    for figure in figures:
        name = figure.get("name", "?")
        if "ratio" in figure and figure.get("app_ms") is not None:
            value = f"{figure['app_ms']} ms vs SQL {figure['sql_ms']} ms " + (
                f"({figure['ratio']}×)" if figure["ratio"] is not None else f"(no ratio: {figure.get('reason', '')})")
        elif figure.get("value") is None:
            value = f"not measured: {figure.get('reason', '')}"[:70]
        else:
            value = f"{figure['value']:,} {figure.get('unit', '')}".strip()
            for extra in ("ratio_to_without", "ratio_to_events_api"):
                if figure.get(extra) is not None:
                    value += f" ({figure[extra]}×)"
            if figure.get("probes_not_completed") is not None:
                value += f" ({figure['probes_not_completed']} of {figure['probes_sent']} probes not completed)"
        target = _target(name)
        verdict = ""
        if target is not None:
            try:
                verdict = "pass" if figure.get("value", figure.get("app_ms")) is not None and target[1](figure) else "FAIL"
            except (KeyError, TypeError):
                verdict = "FAIL"
        rows.append((name, value, target[0] if target else "—", verdict))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


if __name__ == "__main__":
    sys.exit(main())
