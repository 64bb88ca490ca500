"""Work on many contacts, timed as the user waits for it (part ``jobs``).

Each background job runs as the worker runs it — the job's own task body through the one job
runner (``core.jobs``), chunk by chunk, every chunk its own transaction — but in the bench's
process, one delivery to the end (the runner's per-delivery time budget lifted, so no message
goes to a broker nobody reads): the time is job started → done, and rows/s is the job's
contacts per second. Jobs that change data undo it afterwards (the bulk tag is removed again by
the same job, its tag deleted), so the other parts measure the generated data. Previews and the
erasure are timed as their views and services run them.

Figures: ``job_contacts_export`` (every contact to CSV, the file the user downloads),
``job_bulk_tag`` and ``job_bulk_untag`` (add a tag to every contact, then remove it),
``job_score_decay`` and ``job_tag_decay`` (a year of decay over every contact, rolled back),
``preview_temperature_thresholds`` and ``preview_loyalty_tiers`` (the admin's live impact
counts), ``gdpr_erasure`` (a contact with 5,000 events)."""

from __future__ import annotations

import statistics
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

ERASURE_EVENTS = 5_000


class _Rollback(Exception):
    pass


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run_job(kind: str, params: dict, *, user: Any) -> tuple[Any, float]:
    """Start a job as its page does and run it to the end in this process; (job, seconds)."""
    from core.jobs import JOB_TASKS, _job_deliver, runner  # local import: Django is set up by bench.run
    from core.models import Job  # local import: Django is set up by bench.run

    job = Job.objects.create(kind=kind, params=params, created_by=user, title=f"bench {kind}")
    func = JOB_TASKS[kind].run.__wrapped__
    budget = runner.TIME_BUDGET
    runner.TIME_BUDGET = float("inf")
    try:
        started = time.perf_counter()
        outcome = _job_deliver(job.pk, kind, func)
        seconds = time.perf_counter() - started
    finally:
        runner.TIME_BUDGET = budget
    job.refresh_from_db()
    if outcome != "done":
        raise RuntimeError(f"job {kind} ended {outcome}: {job.error}")
    return job, seconds


def _rows_figure(name: str, rows: int, seconds: float, **extra: Any) -> dict:
    return {"name": name, "value": round(rows / seconds) if seconds else None, "unit": "rows/s",
            "rows": rows, "seconds": round(seconds, 2), **extra}


def _timed(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    """Median milliseconds of ``runs`` runs after one untimed one, every run's time, the last result."""
    result = fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times, result


def _rolled_back(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` inside a transaction that is rolled back; (seconds, result)."""
    from django.db import transaction  # local import: Django is set up by bench.run

    box: dict[str, Any] = {}
    try:
        with transaction.atomic():
            started = time.perf_counter()
            box["result"] = fn()
            box["seconds"] = time.perf_counter() - started
            raise _Rollback
    except _Rollback:
        pass
    return box["seconds"], box["result"]


def measure_export(admin: Any) -> dict:
    from contacts.models import Contact  # local import: Django is set up by bench.run
    from core.jobs.files import job_file_path  # local import: Django is set up by bench.run

    job, seconds = _run_job("contacts_export", {}, user=admin)
    rows = job.result["contacts"]
    size = job.result["file"]["bytes"]
    job_file_path(job.pk).unlink(missing_ok=True)
    expected = Contact.objects.count()
    return _rows_figure("job_contacts_export", rows, seconds, bytes=size, chunks=job.chunks_done,
                        counts_agree=rows == expected,
                        measures="every contact to the CSV file the job's page offers (chunks of "
                                 "contacts.tasks.EXPORT_CHUNK, keyset by id, each committed with its resume point)")


def measure_bulk_tag(admin: Any) -> list[dict]:
    from django.db import connection  # local import: Django is set up by bench.run

    from contacts.models import Contact, Tag  # local import: Django is set up by bench.run

    tag = f"bench bulk {uuid.uuid4().hex[:6]}"
    contacts = Contact.objects.count()
    out = []
    try:
        job, seconds = _run_job("contacts_bulk", {"action": "add_tag", "tag": tag, "score": 1}, user=admin)
        out.append(_rows_figure("job_bulk_tag", contacts, seconds, changed=job.result.get("changed"),
                                chunks=job.chunks_done,
                                measures="Contacts → select all matching (no filter) → add a tag with score 1: "
                                         "the tag, its history rows, tiers and segment memberships of every contact"))
        job, seconds = _run_job("contacts_bulk", {"action": "remove_tag", "tag": tag}, user=admin)
        out.append(_rows_figure("job_bulk_untag", contacts, seconds, changed=job.result.get("changed"),
                                chunks=job.chunks_done, measures="the same tag removed from every contact"))
    finally:
        tag_ids = list(Tag.objects.filter(name=tag).values_list("pk", flat=True))
        if tag_ids:
            with connection.cursor() as cursor:
                for table in ("contacts_tagscorechange", "contacts_contacttag"):
                    cursor.execute(f"DELETE FROM {table} WHERE tag_id = ANY(%s)", [tag_ids])
            Tag.objects.filter(pk__in=tag_ids).delete()
    return out


def measure_decay() -> list[dict]:
    """Score and tag decay over the last year, as if decay had just been switched on with a
    30-day half-life for the score and every shop category's tag — inside a transaction that is
    rolled back."""
    from django.utils import timezone  # local import: Django is set up by bench.run

    from contacts.models import Contact, Tag  # local import: Django is set up by bench.run
    from leads.models import TagDecayState, TemperatureSettings  # local import: Django is set up by bench.run
    from leads.tasks import score_decay_apply, tag_decay_apply  # local import: Django is set up by bench.run

    contacts = Contact.objects.count()
    since = timezone.now() - timedelta(days=365)

    def score() -> int:
        TemperatureSettings.objects.filter(pk=TemperatureSettings.current().pk).update(
            decay_enabled=True, decay_half_life_days=30, decay_applied_until=since)
        return score_decay_apply()

    def tags() -> int:
        TemperatureSettings.objects.filter(pk=TemperatureSettings.current().pk).update(tag_decay_enabled=True)
        Tag.objects.filter(key__in=_category_keys()).update(half_life_days=30)
        TagDecayState.objects.all().delete()
        TagDecayState.objects.bulk_create([TagDecayState(tag_id=pk, applied_until=since) for pk in
                                           Tag.objects.filter(half_life_days__gt=0).values_list("pk", flat=True)])
        return tag_decay_apply()

    out = []
    for name, fn, what in (("job_score_decay", score, "contacts whose score decayed (ledger rows written)"),
                           ("job_tag_decay", tags, "contact-tags whose score decayed (history rows written)")):
        seconds, changed = _rolled_back(fn)
        out.append(_rows_figure(name, contacts, seconds, changed=changed, rolled_back=True,
                                measures=f"a year of decay at a 30-day half-life over every contact: {what}"))
    return out


def _category_keys() -> list[str]:
    from contacts.models import tag_key  # local import: Django is set up by bench.run
    from demo.datagen import CATEGORIES  # local import: Django is set up by bench.run

    return [tag_key(category[0]) for category in CATEGORIES]


def measure_previews(admin: Any, runs: int) -> list[dict]:
    from django.test import Client  # local import: Django is set up by bench.run
    from django.urls import reverse

    from leads.models import TemperatureSettings  # local import: Django is set up by bench.run
    from loyalty.models import Program  # local import: Django is set up by bench.run
    from loyalty.services import TierSpec, tiers_preview  # local import: Django is set up by bench.run

    client = Client()
    client.force_login(admin)
    thresholds = TemperatureSettings.current()
    url = reverse("leads:settings_preview") + f"?warm={thresholds.warm + 5}&hot={thresholds.hot + 10}"
    statuses: list[int] = []

    def temperature() -> int:
        response = client.get(url, HTTP_HX_REQUEST="true")
        statuses.append(response.status_code)
        return response.status_code

    ms, times, _ = _timed(temperature, runs)
    out = [{"name": "preview_temperature_thresholds", "value": round(ms, 1), "unit": "ms (median)",
            "runs_ms": [round(t, 1) for t in times], "statuses": sorted(set(statuses)),
            "measures": "Settings → temperature: the live counts for thresholds being typed (the htmx GET)"}]
    program = Program.objects.filter(active=True).first()
    if program is None:
        out.append({"name": "preview_loyalty_tiers", "value": None, "reason": "the data has no active programme"})
        return out
    specs = [TierSpec(name=tier.name, min=tier.min + 1, benefits=tier.benefits or {}, id=tier.pk)
             for tier in program.tiers.active().order_by("min")]
    ms, times, result = _timed(lambda: tiers_preview(program, specs), runs)
    out.append({"name": "preview_loyalty_tiers", "value": round(ms, 1), "unit": "ms (median)",
                "runs_ms": [round(t, 1) for t in times], "distribution": result.get("distribution"),
                "measures": "the programme editor's impact preview of every tier's threshold raised by 1 "
                            "(loyalty.services.tiers_preview over every contact)"})
    return out


def measure_erasure() -> dict:
    """A contact with ERASURE_EVENTS events (and their receipts), erased as the card's GDPR button does."""
    from django.db import connection  # local import: Django is set up by bench.run
    from django.utils import timezone

    from contacts.models import Contact  # local import: Django is set up by bench.run
    from contacts.services import contact_erase  # local import: Django is set up by bench.run

    contact = Contact.objects.create(email=f"bench-erase-{uuid.uuid4().hex[:8]}@example.com")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [now - timedelta(days=365), now])
        cursor.execute(
            """
            WITH e AS (
                INSERT INTO automation_event (id, event_id, contact_id, type, occurred_at, received_at, properties, value)
                SELECT nextval('automation_event_id_seq'), %(prefix)s || n, %(contact)s, 'page_view',
                       %(now)s - n * interval '1 hour', %(now)s, jsonb_build_object('url', '/kategoria/kurtki'), NULL
                FROM generate_series(1, %(n)s) AS n
                RETURNING id, event_id, occurred_at
            )
            INSERT INTO automation_eventreceipt (event_id, event_pk, occurred_at, contact_id, received_at)
            SELECT event_id, id, occurred_at, %(contact)s, %(now)s FROM e
            """,
            {"prefix": f"bench-erase-{contact.pk}-", "contact": contact.pk, "now": now, "n": ERASURE_EVENTS},
        )
    started = time.perf_counter()
    contact_erase(contact)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM automation_event WHERE contact_id = %s", [contact.pk])
        left = cursor.fetchone()[0]
    return {"name": "gdpr_erasure", "value": round(seconds * 1000, 1), "unit": "ms", "events": ERASURE_EVENTS,
            "events_left": left, "rows_per_s": round(ERASURE_EVENTS / seconds) if seconds else None,
            "measures": f"contacts.services.contact_erase of a contact with {ERASURE_EVENTS:,} events and receipts"}


def measure(runs: int) -> list[dict]:
    from django.contrib.auth import get_user_model  # local import: Django is set up by bench.run

    from demo.users import ensure_demo_users  # local import: Django is set up by bench.run

    ensure_demo_users()
    admin = get_user_model().objects.get(username="admin")
    out: list[dict] = []
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("job_contacts_export", lambda: measure_export(admin)),
        ("job_bulk_tag", lambda: measure_bulk_tag(admin)),
        ("job_score_decay", measure_decay),
        ("preview_temperature_thresholds", lambda: measure_previews(admin, runs)),
        ("gdpr_erasure", measure_erasure),
    ]
    for name, part in parts:
        _say(f"jobs: {name} …")
        try:
            result = part()
            figures = result if isinstance(result, list) else [result]
        except Exception as exc:
            traceback.print_exc()
            figures = [{"name": name, "value": None, "reason": f"{type(exc).__name__}: {exc}"}]
        for figure in figures:
            _say(f"{figure['name']}: {figure.get('value')} {figure.get('unit', '')}"
                 + (f" ({figure['rows']:,} rows in {figure['seconds']} s)" if "rows" in figure else ""))
        out += figures
    return out
