"""Work on many contacts, timed as the user waits for it (part ``jobs``).

Each background job runs as the worker runs it — the job's own task body through the one job
runner (``core.jobs``), chunk by chunk, every chunk its own transaction — but in the bench's
process, one delivery to the end (the runner's per-delivery time budget lifted, so no message
goes to a broker nobody reads): the time is job started → done, and rows/s is the job's rows
(its progress unit: contacts, file rows or events) per second. Jobs that change data undo it
afterwards, set-based, so the other parts measure the generated data: the bulk tag is removed
again by the same job, its tag deleted; the imported file's new contacts are purged as stale
anonymous profiles are (every area's ``contacts_purging`` receiver), its rows for existing contacts
carry the values those contacts have plus a tag that is then dropped; the backfilled rule goes
with its guard rows and its tag; the ad-hoc run's tag is dropped and its contacts' tiers and
memberships recomputed. Previews and the erasure are timed as their views and services run them.

Figures: ``job_contacts_export`` (every contact to CSV, the file the user downloads),
``job_bulk_tag`` and ``job_bulk_untag`` (add a tag to every contact, then remove it),
``job_contacts_import`` (a shop's CSV of IMPORT_ROWS rows or one per contact, whichever is fewer,
half updates and half new contacts, through the upload page's ``ContactImport`` and its job;
rows/s of file rows), ``job_rule_backfill`` (a new rule "product view of the most viewed category
→ add tag" run on the last BACKFILL_DAYS days of the data; rows/s of events examined, the job's
progress total), ``job_adhoc_rule`` (an ad-hoc "add tag" on the broadest saved segment; rows/s of
contacts), ``job_score_decay`` and ``job_tag_decay`` (a year of decay over every contact, rolled
back), ``preview_temperature_thresholds`` and ``preview_loyalty_tiers`` (the admin's live impact
counts), ``gdpr_erasure`` (a contact with 5,000 events)."""

from __future__ import annotations

import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ERASURE_EVENTS = 5_000
# Rows of the imported file (at most the bench's contacts): half of them contacts that exist.
IMPORT_ROWS = 100_000
IMPORT_HEADER = ["email", "first_name", "last_name", "city", "country", "consent_email", "tags"]
# The rule backfill's window and the ad-hoc run's target, as their pages offer them.
BACKFILL_DAYS = 30


class _Rollback(Exception):
    pass


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run_job(kind: str, params: dict, *, user: Any, title: str = "",
             created: Callable[[Any], None] | None = None) -> tuple[Any, float]:
    """Start a job as its page does and run it to the end in this process; (job, seconds).
    ``created(job)`` runs between the job's row and its run (what the page records about it)."""
    from core.jobs import JOB_TASKS, _job_deliver, runner  # local import: Django is set up by bench.run
    from core.models import Job  # local import: Django is set up by bench.run

    job = Job.objects.create(kind=kind, params=params, created_by=user, title=title or f"bench {kind}")
    if created is not None:
        created(job)
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
        _tags_drop(list(Tag.objects.filter(name=tag).values_list("pk", flat=True)))
    return out


def _tags_drop(tag_ids: list[int]) -> list[int]:
    """Delete the bench's tags with every contact's score and history row of them, set-based, and
    the audit rows pghistory writes for a deleted tag; → the contacts that had one."""
    from django.apps import apps  # local import: Django is set up by bench.run
    from django.db import connection, transaction

    from contacts.models import Tag  # local import: Django is set up by bench.run

    if not tag_ids:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM contacts_contacttag WHERE tag_id = ANY(%s) RETURNING contact_id", [tag_ids])
        contact_ids = sorted({row[0] for row in cursor.fetchall()})
        cursor.execute("DELETE FROM contacts_tagscorechange WHERE tag_id = ANY(%s)", [tag_ids])
        Tag.objects.filter(pk__in=tag_ids).delete()
        apps.get_model("contacts", "TagEvent").objects.filter(pgh_obj_id__in=tag_ids).delete()
    return contact_ids


def _tag_ids(name: str) -> list[int]:
    from contacts.models import Tag, tag_key  # local import: Django is set up by bench.run

    return list(Tag.objects.filter(key=tag_key(name)).values_list("pk", flat=True))


def _contacts_recompute(contact_ids: list[int]) -> None:
    """Tiers and segment memberships of contacts a job announced (``contacts_changed``), brought
    back after the bench's tag is gone: the same signal, a chunk of contacts per transaction."""
    from django.db import transaction  # local import: Django is set up by bench.run

    from contacts.signals import contacts_changed_send  # local import: Django is set up by bench.run
    from core.jobs import CHUNK_SIZE  # local import: Django is set up by bench.run

    for start in range(0, len(contact_ids), CHUNK_SIZE):
        with transaction.atomic():
            contacts_changed_send(contact_ids[start:start + CHUNK_SIZE], sender=_contacts_recompute)


def _memberships_drain() -> None:
    """The memberships a job queued for the worker's drain (an import's contacts), drained here
    (not timed): the queue is left empty, as found."""
    from segments.dirty import (  # local import: Django is set up by bench.run
        segments_dirty_exists,
        segments_dirty_refresh,
    )

    while segments_dirty_exists():
        segments_dirty_refresh(time_budget=600)


def _contacts_purge(contact_ids: list[int]) -> None:
    """Delete contacts the bench created with everything the areas keep about them, as the purge
    of stale anonymous profiles does (``contacts.merging.contacts_purge``)."""
    from django.db import connection, transaction  # local import: Django is set up by bench.run

    from contacts.merging import contacts_purge  # local import: Django is set up by bench.run

    with transaction.atomic(), connection.cursor() as cursor:
        contacts_purge(cursor, contact_ids)


# Names and places of the file's new contacts (a shop's export: Polish customers).
_FIRST_NAMES = ["Anna", "Maria", "Katarzyna", "Małgorzata", "Agnieszka", "Piotr", "Krzysztof", "Tomasz"]
_LAST_NAMES = ["Nowak", "Kowalska", "Wiśniewska", "Wójcik", "Kamińska", "Lewandowski", "Zieliński", "Szymańska"]
_CITIES = ["Warszawa", "Kraków", "Wrocław", "Poznań", "Gdańsk", "Łódź", "Katowice", "Lublin"]


def _import_file_rows(existing: int, new: int, *, tag: str, token: str) -> list[list]:
    """The shop's export: ``existing`` rows of contacts already stored, each with exactly the
    values the contact has (name, city, country, email consent, its strongest tag and score) plus
    ``tag``, and ``new`` rows of emails nobody has, with a shop category's tag; the two kinds
    alternate, so every chunk the import commits holds both. (Rows stay under 100 bytes on
    average: 100,000 of them must fit the upload page's 10 MB.)"""
    from django.db import connection  # local import: Django is set up by bench.run

    from contacts.csvio import tags_format  # local import: Django is set up by bench.run
    from demo.datagen import CATEGORIES  # local import: Django is set up by bench.run

    with connection.cursor() as cursor:
        # a spread of known contacts, not the oldest ids only; erased emails cannot be imported
        cursor.execute(
            """
            SELECT c.email, c.first_name, c.last_name, c.city, c.country, s.granted, strongest.name, strongest.score
            FROM (SELECT * FROM contacts_contact WHERE NOT is_anonymous ORDER BY md5(id::text) LIMIT %s) c
            LEFT JOIN contacts_consent s ON s.contact_id = c.id AND s.channel = 'email'
            LEFT JOIN LATERAL (SELECT t.name, ct.score FROM contacts_contacttag ct JOIN contacts_tag t ON t.id = ct.tag_id
                               WHERE ct.contact_id = c.id ORDER BY ct.score DESC, t.name LIMIT 1) strongest ON true
            """,
            [existing],
        )
        stored = cursor.fetchall()
    old_rows = [[email, first, last, city, country, "" if consent is None else ("yes" if consent else "no"),
                 tags_format([*([(strongest, score)] if strongest else []), (tag, 1)])]
                for email, first, last, city, country, consent, strongest, score in stored]
    categories = [category[0] for category in CATEGORIES]
    new_rows = [[f"bench-import-{token}-{n}@example.com", _FIRST_NAMES[n % 8], _LAST_NAMES[n // 8 % 8],
                 _CITIES[n // 64 % 8], "PL", "yes" if n % 3 else "no",
                 tags_format([(categories[n % len(categories)], 1 + n % 4)])]
                for n in range(new)]
    rows: list[list] = []
    for index in range(max(len(old_rows), len(new_rows))):
        rows += [kind[index] for kind in (old_rows, new_rows) if index < len(kind)]
    return rows


def measure_import(admin: Any) -> dict:
    """A shop's CSV export of IMPORT_ROWS rows (at most the bench's contacts) imported as the
    upload page and its mapping page start it: half the rows update contacts that exist (with the
    values they have, so only an added tag changes them), half create contacts. Afterwards the new
    contacts are purged and the added tag dropped."""
    from django.db import connection  # local import: Django is set up by bench.run

    from contacts.csvio import (  # local import: Django is set up by bench.run
        MAX_FILE_BYTES,
        csv_lines,
        decode_upload,
        guess_mapping,
        read_header_and_preview,
    )
    from contacts.models import Contact, ContactImport  # local import: Django is set up by bench.run

    contacts = Contact.objects.count()
    rows = min(IMPORT_ROWS, contacts)
    token = uuid.uuid4().hex[:6]
    tag = f"bench import {token}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM contacts_contact")
        last_id = cursor.fetchone()[0]
    contact_import = None
    try:
        with tempfile.TemporaryDirectory(prefix="mh-bench-import-") as directory:
            path = Path(directory) / f"shop-export-{token}.csv"
            file_rows = _import_file_rows(rows // 2, rows - rows // 2, tag=tag, token=token)
            with path.open("w", encoding="utf-8", newline="") as file:
                file.writelines(csv_lines([IMPORT_HEADER, *file_rows]))
            raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"the file has {len(raw):,} bytes; the upload page takes {MAX_FILE_BYTES:,}")
        # the upload page: the file's text, its header, the guessed column mapping
        text = decode_upload(raw[:MAX_FILE_BYTES])
        header, _preview = read_header_and_preview(text)
        contact_import = ContactImport.objects.create(filename=path.name, content=text, header=header,
                                                      mapping=guess_mapping(header), created_by_id=admin.pk)
        unmapped = sorted(set(IMPORT_HEADER) - {header[index] for index in contact_import.mapping.values()})
        if unmapped:
            raise ValueError(f"the importer did not map the columns {unmapped}")

        def queued(job: Any) -> None:  # the mapping page, the guessed mapping confirmed
            ContactImport.objects.filter(pk=contact_import.pk).update(status=ContactImport.Status.QUEUED,
                                                                       job_id=job.pk)

        job, seconds = _run_job("import_contacts", {"import_id": contact_import.pk, "language": "en"}, user=admin,
                                title=f"Import {path.name}", created=queued)
        created = Contact.all_objects.filter(pk__gt=last_id).count()
        return _rows_figure(
            "job_contacts_import", job.result["rows"], seconds, imported=job.result["imported"],
            errors=job.result["errors"], created=created, updated=job.result["imported"] - created,
            bytes=len(raw), chunks=job.chunks_done,
            rows_are=("IMPORT_ROWS" if rows == IMPORT_ROWS else "the bench's contacts") + f" ({rows:,})",
            measures="Contacts → Import: a shop's CSV (email, first/last name, city, country, email consent, "
                     "tags with scores) uploaded, the guessed mapping confirmed, the import job to its end; half the "
                     "rows are contacts that exist (an added tag), half new contacts (contacts.csvio.CHUNK_ROWS "
                     "rows a chunk)")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM contacts_contact WHERE id > %s",
                           [last_id])
            _contacts_purge(cursor.fetchone()[0])
        _tags_drop(_tag_ids(tag))
        if contact_import is not None:
            ContactImport.objects.filter(pk=contact_import.pk).delete()
        _memberships_drain()


def measure_rule_backfill(admin: Any) -> dict:
    """A new rule "product view of <the most viewed category> → add tag" run on the last
    BACKFILL_DAYS days of events as the rule page's "Run on past events" starts it. The last days
    are those of the data (its newest product view, or now if later events exist)."""
    from django.apps import apps  # local import: Django is set up by bench.run
    from django.db import connection, transaction
    from django.utils import timezone

    from automation.models import Rule  # local import: Django is set up by bench.run
    from automation.rules import rule_save, validate_rule  # local import: Django is set up by bench.run

    token = uuid.uuid4().hex[:6]
    tag = f"bench interest {token}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(occurred_at) FROM automation_event WHERE type = 'product_view'")
        newest = cursor.fetchone()[0] or timezone.now()
        since = min(newest, timezone.now()) - timedelta(days=BACKFILL_DAYS)
        cursor.execute(
            """
            SELECT properties ->> 'category' FROM automation_event
            WHERE type = 'product_view' AND occurred_at >= %s AND properties ? 'category'
            GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1
            """,
            [since],
        )
        found = cursor.fetchone()
    if found is None:
        return {"name": "job_rule_backfill", "value": None, "reason": f"no product views in the last {BACKFILL_DAYS} days"}
    category = found[0]
    cleaned = validate_rule({
        "name": f"bench backfill {token}",
        "trigger": {"event_type": "product_view", "where": [{"property": "category", "op": "eq", "value": category}]},
        "actions": [{"type": "add_tag", "tag": tag, "score": 1}],
    })
    with transaction.atomic():
        rule = rule_save(Rule(), cleaned, user=admin)
    try:
        job, seconds = _run_job("rule_backfill", {"rule_id": rule.pk, "since": since.isoformat()}, user=admin,
                                title=f"bench rule backfill since {since:%Y-%m-%d %H:%M}")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(DISTINCT contact_id) FROM automation_ruleapplication WHERE rule_id = %s",
                           [rule.pk])
            contacts = cursor.fetchone()[0]
        return _rows_figure(
            "job_rule_backfill", job.result["events"], seconds, total=job.total, applied=job.result["applied"],
            contacts=contacts, chunks=job.chunks_done, since=since.isoformat(), category=category,
            rows_are="events examined: the job's progress total (every product view since then, "
                     "engine.rule_backfill_count), not only the category's",
            measures=f"Rules → new rule (product view, category = {category} → add tag +1) → Run on past events "
                     f"since {BACKFILL_DAYS} days before the data's newest product view: automation.tasks."
                     "rule_backfill_task, chunks of BACKFILL_CHUNK events under the engine lock, guard rows, "
                     "tags, tiers and memberships of the contacts it tagged")
    finally:
        tagged = _tags_drop(_tag_ids(tag))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM automation_ruleapplication WHERE rule_id = %s", [rule.pk])
            Rule.objects.filter(pk=rule.pk).delete()
            # its audit trail: created, deleted
            apps.get_model("automation", "RuleEvent").objects.filter(pgh_obj_id=rule.pk).delete()
        _contacts_recompute(tagged)


def _broadest_segment() -> tuple[Any, int] | None:
    """The saved segment with the most members, and how many."""
    from django.db.models import Count  # local import: Django is set up by bench.run

    from segments.models import Segment  # local import: Django is set up by bench.run

    segment = Segment.objects.annotate(members_now=Count("members")).order_by("-members_now", "pk").first()
    return (segment, segment.members_now) if segment is not None else None


def measure_adhoc(admin: Any) -> dict:
    """Automation → Ad-hoc actions on the broadest saved segment: add a tag +1 to every member
    (``automation.adhoc``); afterwards the tag is dropped and the members' tiers and memberships
    recomputed."""
    from automation.rules import validate_actions  # local import: Django is set up by bench.run
    from contacts.models import Contact  # local import: Django is set up by bench.run

    found = _broadest_segment()
    if found is None or not found[1]:
        return {"name": "job_adhoc_rule", "value": None, "reason": "the data has no saved segment with members"}
    segment, members = found
    tag = f"bench adhoc {uuid.uuid4().hex[:6]}"
    actions = validate_actions([{"type": "add_tag", "tag": tag, "score": 1}])
    try:
        job, seconds = _run_job("adhoc_actions", {"target": "segment", "segment_id": segment.pk, "actions": actions},
                                user=admin, title=f"Add tag {tag} +1 — {members:,} contacts of segment “{segment.name}”")
        rows = job.result["contacts"]
        return _rows_figure(
            "job_adhoc_rule", rows, seconds, segment=segment.name, segment_members=members,
            contacts=Contact.objects.count(), chunks=job.chunks_done,
            rows_are=f"contacts: the members of the broadest saved segment ({members:,})",
            measures="Automation → Ad-hoc actions → a saved segment → add tag +1: automation.adhoc.adhoc_run, chunks "
                     "of CHUNK contact ids, each with its tag scores, history, tiers and memberships")
    finally:
        _contacts_recompute(_tags_drop(_tag_ids(tag)))


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
        ("job_contacts_import", lambda: measure_import(admin)),
        ("job_rule_backfill", lambda: measure_rule_backfill(admin)),
        ("job_adhoc_rule", lambda: measure_adhoc(admin)),
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
