"""Loyalty workflows: validating and saving programmes, computing tiers set-based, previews, pins.

One SQL "plan" (``_plan_sql``) decides every contact's tier for a programme: the metric per contact,
the tier it reaches (a CASE over the thresholds), then the programme's policies — a pin wins until
its date; with a grace period a drop is postponed (``pending_tier``/``downgrade_due_at``) and applied
once due; an upgrade clears a pending drop. The same plan feeds

- ``tiers_preview`` — counts only, nothing written (the editor's impact preview and the API's);
- ``program_recompute`` — all contacts, one INSERT … ON CONFLICT statement writing only rows that
  change, plus their TierChange rows (from, to, when, why), under the programme's advisory lock and
  a new version;
- ``tiers_refresh_for_contacts`` — the contacts a batch of events touched (the rules engine calls it
  inside its transaction);
- ``tiers_apply_due`` — grace periods and pins that ended (a scheduled task).

Because preview and recompute run the same SQL, the preview's numbers are the ones the recompute
then produces (unless events arrive in between).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import pghistory
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import Contact, Tag, tag_key
from core.locks import LOYALTY_PROGRAM, advisory_xact_lock_many
from core.outbox import outbox_written_send
from loyalty.metrics import FieldError, metric_clean, metric_sql
from loyalty.models import ContactTier, Program, Tier

logger = logging.getLogger(__name__)

MAX_MIN = Decimal("999999999999.99")
BENEFIT_KEYS = {"discount_percent", "free_shipping", "gift", "text"}


@dataclass
class TierSpec:
    """A tier as proposed by the editor or the API (``id`` only from the editor)."""

    name: str
    min: Decimal
    benefits: dict = field(default_factory=dict)
    id: int | None = None


# --- validation ---------------------------------------------------------------------------------
def benefits_clean(raw, *, field_name: str) -> tuple[dict, list[FieldError]]:
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [FieldError(field_name, "must be an object such as {\"discount_percent\": 5}")]
    errors: list[FieldError] = []
    benefits: dict = {}
    for key, value in raw.items():
        where = f"{field_name}.{key}"
        if key == "discount_percent":
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                errors.append(FieldError(where, "must be a number from 0 to 100"))
            else:
                benefits[key] = value
        elif key == "free_shipping":
            if not isinstance(value, bool):
                errors.append(FieldError(where, "must be true or false"))
            elif value:
                benefits[key] = True
        elif key in ("gift", "text"):
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > 500:
                errors.append(FieldError(where, "must be text of at most 500 characters"))
            elif value.strip():
                benefits[key] = value.strip()
        else:
            errors.append(FieldError(where, f"is not a benefit; use {', '.join(sorted(BENEFIT_KEYS))}"))
    return benefits, errors


def _decimal_min(value, *, field_name: str) -> tuple[Decimal | None, FieldError | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None, FieldError(field_name, "must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None, FieldError(field_name, "must be a number")
    if not number.is_finite():
        return None, FieldError(field_name, "must be a finite number")
    if abs(number) > MAX_MIN:
        return None, FieldError(field_name, "is too large")
    if number != number.quantize(Decimal("0.01")):
        return None, FieldError(field_name, "may have at most 2 decimal places")
    return number.quantize(Decimal("0.01")), None


def tiers_check(specs: list[TierSpec], *, field_name: str = "tiers") -> list[FieldError]:
    """Ordered, non-overlapping thresholds and unique names: the rules shared by form and API.

    Tiers are listed from the lowest threshold to the highest; each threshold must be greater than
    the one before, so the ranges [min, next min) never overlap and never leave a gap."""
    errors: list[FieldError] = []
    if not specs:
        return [FieldError(field_name, _("at least one tier is needed"))]
    seen: dict[str, int] = {}
    for index, spec in enumerate(specs):
        key = spec.name.strip().lower()
        if key in seen:
            errors.append(FieldError(f"{field_name}.{index}.name",
                                      _("“%(name)s” is used by tier %(number)s already; tier names must be unique")
                                      % {"name": spec.name, "number": seen[key] + 1}))
        else:
            seen[key] = index
        if index and spec.min <= specs[index - 1].min:
            previous = specs[index - 1]
            if spec.min == previous.min:
                message = _("%(min)s equals the previous tier’s minimum (%(previous)s: %(previous_min)s); list tiers from "
                            "the lowest threshold to the highest, each higher than the one before")
            else:
                message = _("%(min)s is below the previous tier’s minimum (%(previous)s: %(previous_min)s); list tiers "
                            "from the lowest threshold to the highest, each higher than the one before")
            errors.append(FieldError(f"{field_name}.{index}.min", message % {
                "min": f"{spec.min.normalize():f}", "previous": previous.name,
                "previous_min": f"{previous.min.normalize():f}"}))
    return errors


def tiers_clean(raw, *, field_name: str = "tiers") -> tuple[list[TierSpec], list[FieldError]]:
    """API input (a JSON list) → TierSpecs, or the errors naming each field."""
    if not isinstance(raw, list):
        return [], [FieldError(field_name, "must be a list of tiers")]
    specs: list[TierSpec] = []
    errors: list[FieldError] = []
    for index, item in enumerate(raw):
        where = f"{field_name}.{index}"
        if not isinstance(item, dict):
            errors.append(FieldError(where, "must be an object with name, min and benefits"))
            continue
        unknown = set(item) - {"name", "min", "benefits", "id"}
        if unknown:
            errors.append(FieldError(f"{where}.{sorted(unknown)[0]}", "is not a tier setting"))
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(FieldError(f"{where}.name", "is required"))
            name = None
        elif len(name.strip()) > 100:
            errors.append(FieldError(f"{where}.name", "is longer than 100 characters"))
            name = None
        if "min" not in item or item["min"] is None:
            errors.append(FieldError(f"{where}.min", "is required"))
            minimum = None
        else:
            minimum, error = _decimal_min(item["min"], field_name=f"{where}.min")
            if error:
                errors.append(error)
        benefits, benefit_errors = benefits_clean(item.get("benefits"), field_name=f"{where}.benefits")
        errors.extend(benefit_errors)
        if name is not None and minimum is not None:
            specs.append(TierSpec(name=" ".join(name.split()), min=minimum, benefits=benefits))
    if not errors:
        errors = tiers_check(specs, field_name=field_name)
    return specs, errors


def program_input_clean(data, *, program: Program | None = None) -> tuple[dict, list[FieldError]]:
    """The whole programme as the API sends it. With ``program`` (a PUT), missing keys keep the
    programme's current values."""
    if not isinstance(data, dict):
        return {}, [FieldError("body", "must be a JSON object")]
    errors: list[FieldError] = []
    cleaned: dict = {}
    unknown = set(data) - {"name", "description", "metric", "tiers", "downgrade_policy", "grace_days"}
    if unknown:
        errors.append(FieldError(sorted(unknown)[0], "is not a programme setting"))
    if "name" in data or program is None:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(FieldError("name", "is required"))
        elif len(name.strip()) > 100:
            errors.append(FieldError("name", "is longer than 100 characters"))
        else:
            cleaned["name"] = " ".join(name.split())
            clash = Program.objects.filter(name__iexact=cleaned["name"])
            if program is not None:
                clash = clash.exclude(pk=program.pk)
            if clash.exists():
                errors.append(FieldError("name", f"a programme named “{cleaned['name']}” exists already"))
    if "description" in data:
        if not isinstance(data["description"], str) or len(data["description"]) > 2000:
            errors.append(FieldError("description", "must be text of at most 2000 characters"))
        else:
            cleaned["description"] = data["description"].strip()
    if "metric" in data or program is None:
        metric, metric_errors = metric_clean(data.get("metric"))
        errors.extend(metric_errors)
        if metric is not None:
            cleaned["metric"] = metric
    if "tiers" in data or program is None:
        specs, tier_errors = tiers_clean(data.get("tiers"))
        errors.extend(tier_errors)
        cleaned["tiers"] = specs
    if "downgrade_policy" in data:
        if data["downgrade_policy"] not in Program.Downgrade.values:
            errors.append(FieldError("downgrade_policy", f"must be one of {', '.join(Program.Downgrade.values)}"))
        else:
            cleaned["downgrade_policy"] = data["downgrade_policy"]
    if "grace_days" in data:
        grace = data["grace_days"]
        if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 3650:
            errors.append(FieldError("grace_days", "must be a whole number of days from 0 to 3650"))
        else:
            cleaned["grace_days"] = grace
    policy = cleaned.get("downgrade_policy", program.downgrade_policy if program else Program.Downgrade.IMMEDIATE)
    grace = cleaned.get("grace_days", program.grace_days if program else 0)
    if policy == Program.Downgrade.GRACE and not grace and not any(e.field.startswith("grace") for e in errors):
        errors.append(FieldError("grace_days", "must be at least 1 day with the grace-period downgrade policy"))
    return cleaned, errors


# --- the plan -----------------------------------------------------------------------------------
@dataclass
class _Setup:
    """A programme as the plan sees it: metric, policy and the tiers with their identities."""

    program_id: int
    metric: dict
    grace_days: int  # 0: immediate downgrades
    # (key, min) of the tiers contacts can reach, key = tier id, or a negative stand-in for a
    # tier the preview proposes and that does not exist yet
    reachable: list[tuple[int, Decimal]]
    # every tier key the plan may meet (reachable, retired or about to be) → the threshold it
    # ranks by, to say whether a move is up or down
    ranks: dict[int, Decimal]
    names: dict[int, str]


def _match_tiers(program: Program | None, specs: list[TierSpec]) -> list[tuple[TierSpec, Tier | None]]:
    """Which existing tier each proposed tier is: by id (editor rows), else by name."""
    existing = list(program.tiers.all()) if program is not None and program.pk else []
    by_id = {tier.pk: tier for tier in existing}
    taken: set[int] = set()
    pairs: list[tuple[TierSpec, Tier | None]] = []
    for spec in specs:
        tier = by_id.get(spec.id) if spec.id else None
        if tier is not None:
            taken.add(tier.pk)
        pairs.append((spec, tier))
    by_name = {tier.name.lower(): tier for tier in existing}
    for index, (spec, tier) in enumerate(pairs):
        if tier is None:
            candidate = by_name.get(spec.name.lower())
            if candidate is not None and candidate.pk not in taken:
                taken.add(candidate.pk)
                pairs[index] = (spec, candidate)
    return pairs


def _setup_for(program: Program | None, *, specs: list[TierSpec] | None = None, metric: dict | None = None,
               downgrade_policy: str | None = None, grace_days: int | None = None) -> _Setup:
    """The plan's view of ``program`` as saved, or as it would be with the proposed changes."""
    policy = downgrade_policy or (program.downgrade_policy if program else Program.Downgrade.IMMEDIATE)
    grace = grace_days if grace_days is not None else (program.grace_days if program else 0)
    setup = _Setup(
        program_id=program.pk if program and program.pk else 0,
        metric=metric or program.metric,
        grace_days=grace if policy == Program.Downgrade.GRACE else 0,
        reachable=[], ranks={}, names={},
    )
    existing = list(program.tiers.all()) if program is not None and program.pk else []
    for tier in existing:
        setup.ranks[tier.pk] = tier.min
        setup.names[tier.pk] = tier.name
    if specs is None:
        setup.reachable = [(tier.pk, tier.min) for tier in existing if not tier.retired]
        return setup
    stand_in = 0
    for spec, tier in _match_tiers(program, specs):
        if tier is None:
            stand_in -= 1
            key = stand_in
        else:
            key = tier.pk
        setup.reachable.append((key, spec.min))
        setup.ranks[key] = spec.min
        setup.names[key] = spec.name
    return setup


def _plan_sql(setup: _Setup, *, scope: str, scope_params: dict, now: datetime) -> tuple[str, dict]:
    """The CTE chain ending in ``final``: one row per contact in scope with its current and new
    state, ``tier_changed``, ``up``/``down`` and ``row_changed`` (something to write)."""
    params: dict = {
        "program_id": setup.program_id,
        "now": now,
        "today": timezone.localdate(now),
        "grace": bool(setup.grace_days),
        "grace_interval": timedelta(days=setup.grace_days),
        "reachable_ids": [key for key, _ in setup.reachable if key > 0],
        **scope_params,
    }
    metric_query, metric_params = metric_sql(setup.metric, scope_sql=scope, now=now)
    params.update(metric_params)

    # The tier a metric value reaches: the greatest min not above it (a CASE beats a join here).
    branches = []
    for index, (key, minimum) in enumerate(sorted(setup.reachable, key=lambda pair: pair[1], reverse=True)):
        params[f"t{index}_min"] = minimum
        params[f"t{index}_key"] = key
        branches.append(f"WHEN m.metric_value >= %(t{index}_min)s THEN %(t{index}_key)s::bigint")
    computed = f"CASE {' '.join(branches)} END" if branches else "NULL::bigint"

    # A tier's rank (its threshold) by id, as a CASE: cheaper than joining a VALUES list thrice.
    rank_branches = []
    for index, (key, minimum) in enumerate(setup.ranks.items()):
        params[f"r{index}_key"] = key
        params[f"r{index}_min"] = minimum
        rank_branches.append(f"WHEN %(r{index}_key)s::bigint THEN %(r{index}_min)s::numeric")

    def rank_of(column: str) -> str:
        return f"(CASE {column} {' '.join(rank_branches)} END)" if rank_branches else "NULL::numeric"

    if metric_query is None:  # the contact score is on the contact row
        metric_cte = (
            "SELECT c.id AS contact_id, c.score::numeric(14, 2) AS metric_value FROM contacts_contact c "
            f"WHERE {scope.format(col='c.id')} AND NOT c.is_anonymous"
        )
    else:
        metric_cte = (
            "SELECT c.id AS contact_id, COALESCE(agg.metric_value, 0)::numeric(14, 2) AS metric_value "
            f"FROM contacts_contact c LEFT JOIN ({metric_query}) agg ON agg.contact_id = c.id "
            f"WHERE {scope.format(col='c.id')} AND NOT c.is_anonymous"
        )
    sql = f"""
    WITH metric AS ({metric_cte}),
    base AS (
        SELECT m.contact_id, m.metric_value, {computed} AS computed_id,
               cur.contact_id IS NOT NULL AS has_row,
               cur.tier_id AS old_id, COALESCE(cur.metric_value, 0) AS old_metric, cur.since AS old_since,
               cur.pending_tier_id AS old_pending_id, cur.downgrade_due_at AS old_due,
               cur.pinned_tier_id AS old_pinned_id, cur.pinned_until AS old_pinned_until,
               cur.pinned_by_id AS old_pinned_by_id, COALESCE(cur.pinned_note, '') AS old_pinned_note,
               COALESCE(cur.pinned_tier_id = ANY(%(reachable_ids)s) AND cur.pinned_until >= %(today)s, FALSE) AS pin_active,
               COALESCE(cur.tier_id = ANY(%(reachable_ids)s), FALSE) AS old_reachable
        FROM metric m
        LEFT JOIN loyalty_contacttier cur ON cur.program_id = %(program_id)s AND cur.contact_id = m.contact_id
    ),
    ranked AS (
        SELECT b.*, {rank_of("b.old_id")} AS old_rank, {rank_of("b.computed_id")} AS computed_rank
        FROM base b
    ),
    held AS (
        -- grace period: a drop from a tier that still exists waits until due
        SELECT r.*,
               (%(grace)s AND NOT r.pin_active AND r.old_reachable
                AND (r.computed_id IS NULL OR r.computed_rank < r.old_rank)
                AND NOT COALESCE(r.old_due <= %(now)s, FALSE)) AS hold
        FROM ranked r
    ),
    decided AS (
        SELECT h.contact_id, h.metric_value, h.has_row, h.old_id, h.old_metric, h.old_since, h.old_rank,
               h.old_pending_id, h.old_due, h.old_pinned_id, h.old_pinned_until,
               h.old_pinned_by_id, h.old_pinned_note,
               CASE WHEN h.pin_active THEN h.old_pinned_id WHEN h.hold THEN h.old_id ELSE h.computed_id END AS new_id,
               CASE WHEN h.hold THEN h.computed_id END AS new_pending_id,
               CASE WHEN h.hold THEN COALESCE(h.old_due, %(now)s + %(grace_interval)s) END AS new_due,
               CASE WHEN h.pin_active THEN h.old_pinned_id END AS new_pinned_id,
               CASE WHEN h.pin_active THEN h.old_pinned_until END AS new_pinned_until,
               CASE WHEN h.pin_active THEN h.old_pinned_by_id END AS new_pinned_by_id,
               CASE WHEN h.pin_active THEN h.old_pinned_note ELSE '' END AS new_pinned_note
        FROM held h
    ),
    moved AS (
        SELECT d.*, {rank_of("d.new_id")} AS new_rank,
               d.new_id IS DISTINCT FROM d.old_id AS tier_changed
        FROM decided d
    ),
    final AS (
        SELECT mv.*,
               mv.tier_changed AND (mv.new_id IS NULL OR COALESCE(mv.new_rank < mv.old_rank, FALSE)) AS down,
               mv.tier_changed AND NOT (mv.new_id IS NULL OR COALESCE(mv.new_rank < mv.old_rank, FALSE)) AS up,
               CASE WHEN mv.has_row THEN
                    mv.tier_changed OR mv.metric_value <> mv.old_metric
                    OR mv.new_pending_id IS DISTINCT FROM mv.old_pending_id OR mv.new_due IS DISTINCT FROM mv.old_due
                    OR mv.new_pinned_id IS DISTINCT FROM mv.old_pinned_id
                    OR mv.new_pinned_until IS DISTINCT FROM mv.old_pinned_until
               ELSE mv.new_id IS NOT NULL OR mv.metric_value <> 0 OR mv.new_due IS NOT NULL
               END AS row_changed
        FROM moved mv
    )
    """
    return sql, params


ALL_CONTACTS = "TRUE"
SOME_CONTACTS = "{col} = ANY(%(scope_ids)s)"
DUE_CONTACTS = (
    "{col} IN (SELECT due.contact_id FROM loyalty_contacttier due WHERE due.program_id = %(program_id)s "
    "AND (due.downgrade_due_at <= %(now)s OR due.pinned_until < %(today)s))"
)


def _write(setup: _Setup, *, scope: str, scope_params: dict, now: datetime, version: int, reason: str,
           user_id: int | None) -> dict:
    """The one statement that applies the plan: upsert the rows that change, log tier changes."""
    plan, params = _plan_sql(setup, scope=scope, scope_params=scope_params, now=now)
    params.update({"version": version, "reason": reason[:200], "user_id": user_id})
    sql = plan + """,
    changed AS MATERIALIZED (SELECT * FROM final WHERE row_changed),
    upserted AS (
        INSERT INTO loyalty_contacttier (program_id, contact_id, tier_id, metric_value, since, pending_tier_id,
                                         downgrade_due_at, pinned_tier_id, pinned_until, pinned_by_id, pinned_note, version)
        SELECT %(program_id)s, ch.contact_id, ch.new_id, ch.metric_value,
               CASE WHEN ch.tier_changed OR ch.old_since IS NULL THEN %(now)s ELSE ch.old_since END,
               ch.new_pending_id, ch.new_due, ch.new_pinned_id, ch.new_pinned_until, ch.new_pinned_by_id,
               ch.new_pinned_note, %(version)s
        FROM changed ch
        ON CONFLICT (program_id, contact_id) DO UPDATE SET
            tier_id = EXCLUDED.tier_id, metric_value = EXCLUDED.metric_value, since = EXCLUDED.since,
            pending_tier_id = EXCLUDED.pending_tier_id, downgrade_due_at = EXCLUDED.downgrade_due_at,
            pinned_tier_id = EXCLUDED.pinned_tier_id, pinned_until = EXCLUDED.pinned_until,
            pinned_by_id = EXCLUDED.pinned_by_id, pinned_note = EXCLUDED.pinned_note, version = EXCLUDED.version
        RETURNING 1
    ),
    logged AS (
        INSERT INTO loyalty_tierchange (program_id, contact_id, from_tier, to_tier, direction, reason, user_id, created_at)
        SELECT %(program_id)s, ch.contact_id, COALESCE(ot.name, ''), COALESCE(nt.name, ''),
               CASE WHEN ch.down THEN -1 ELSE 1 END, %(reason)s, %(user_id)s, %(now)s
        FROM changed ch
        LEFT JOIN loyalty_tier ot ON ot.id = ch.old_id
        LEFT JOIN loyalty_tier nt ON nt.id = ch.new_id
        WHERE ch.tier_changed
        RETURNING 1
    ),
    told AS (
        -- the world hears of each tier change (core.outbox) from the same statement
        INSERT INTO core_outboxmessage (type, contact_id, program_id, data)
        SELECT 'loyalty.tier_changed', ch.contact_id, %(program_id)s, jsonb_build_object('from', ot.name, 'to', nt.name)
        FROM changed ch
        LEFT JOIN loyalty_tier ot ON ot.id = ch.old_id
        LEFT JOIN loyalty_tier nt ON nt.id = ch.new_id
        WHERE ch.tier_changed
    )
    SELECT (SELECT count(*) FROM upserted), count(*) FILTER (WHERE up), count(*) FILTER (WHERE down)
    FROM changed
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        written, up, down = cursor.fetchone()
    if up or down:
        outbox_written_send(_write)
    return {"written": written, "up": up, "down": down}


def _lock_programs(program_ids: list[int], *, shared: bool) -> None:
    """The programmes' locks (``core.locks.LOYALTY_PROGRAM``). A full recompute or a save takes
    them exclusively; incremental refreshes and pins share them. So a refresh never computes with
    tiers that a concurrent save is replacing, and two recomputes never interleave."""
    if not program_ids:
        return
    with connection.cursor() as cursor:
        advisory_xact_lock_many(cursor, LOYALTY_PROGRAM, program_ids, shared=shared)


# --- preview ------------------------------------------------------------------------------------
def tiers_preview(program: Program | None, tiers: list[TierSpec], *, metric: dict | None = None,
                  downgrade_policy: str | None = None, grace_days: int | None = None,
                  now: datetime | None = None) -> dict:
    """What saving ``tiers`` (and optionally a metric or policy) would do, without writing:
    ``{"up", "down", "unchanged", "pending_down", "no_tier", "distribution": {tier name: count}}``.

    ``down`` counts contacts that move down now; with a grace period a drop is postponed, and such
    contacts are in ``pending_down`` (contacts waiting out a grace period after the recompute)."""
    now = now or timezone.now()
    setup = _setup_for(program, specs=tiers, metric=metric, downgrade_policy=downgrade_policy, grace_days=grace_days)
    plan, params = _plan_sql(setup, scope=ALL_CONTACTS, scope_params={}, now=now)
    sql = plan + """
    SELECT new_id, count(*), count(*) FILTER (WHERE up), count(*) FILTER (WHERE down),
           count(*) FILTER (WHERE new_due IS NOT NULL)
    FROM final GROUP BY new_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return _summary(setup, rows)


def _summary(setup: _Setup, rows) -> dict:
    counts = {key: 0 for key, _ in sorted(setup.reachable, key=lambda pair: pair[1])}
    up = down = pending = total = no_tier = 0
    for new_id, count, row_up, row_down, row_pending in rows:
        total += count
        up += row_up
        down += row_down
        pending += row_pending
        if new_id is None:
            no_tier += count
        else:
            counts[new_id] = counts.get(new_id, 0) + count
    return {
        "up": up,
        "down": down,
        "unchanged": total - up - down,
        "pending_down": pending,
        "no_tier": no_tier,
        "distribution": {setup.names.get(key, str(key)): count for key, count in counts.items()},
    }


# --- saving -------------------------------------------------------------------------------------
def program_save(program: Program | None, *, tiers: list[TierSpec] | None = None, user=None, **fields) -> Program:
    """Create or update a programme and its tiers (validated input). Tiers are matched to existing
    ones by id, else by name; tiers left out are retired until the next recompute moves their
    contacts. The caller starts (or runs) the recompute."""
    with transaction.atomic(), pghistory.context(user=getattr(user, "pk", None)):
        if program is None or program.pk is None:
            program = Program.objects.create(
                name=fields["name"], description=fields.get("description", ""), metric=fields["metric"],
                downgrade_policy=fields.get("downgrade_policy", Program.Downgrade.IMMEDIATE),
                grace_days=fields.get("grace_days", 0),
            )
        else:
            program = Program.objects.select_for_update().get(pk=program.pk)
            _lock_programs([program.pk], shared=False)
            changed = [name for name, value in fields.items() if getattr(program, name) != value]
            for name in changed:
                setattr(program, name, fields[name])
            if changed:
                program.updated_at = timezone.now()
                program.save(update_fields=[*changed, "updated_at"])
        if tiers is not None:
            _tiers_replace(program, tiers)
    return program


def _tiers_replace(program: Program, specs: list[TierSpec]) -> None:
    pairs = _match_tiers(program, specs)
    kept = {tier.pk for _, tier in pairs if tier is not None}
    proposed_names = {spec.name.lower() for spec in specs}
    updates: list[Tier] = []
    for tier in program.tiers.all():
        if tier.pk in kept or tier.retired:
            continue
        tier.retired = True
        if tier.name.lower() in proposed_names:  # its name now belongs to another tier
            tier.name = f"{tier.name} (removed #{tier.pk})"[:100]
        updates.append(tier)
    for spec, tier in pairs:
        if tier is None:
            continue
        tier.name, tier.min, tier.benefits, tier.retired = spec.name, spec.min, spec.benefits, False
        updates.append(tier)
    if updates:
        # one statement: the name constraint is checked at its end, so renames may swap
        Tier.objects.bulk_update(updates, ["name", "min", "benefits", "retired"])
    new = [Tier(program=program, name=spec.name, min=spec.min, benefits=spec.benefits) for spec, tier in pairs if tier is None]
    if new:
        Tier.objects.bulk_create(new)


def program_delete(program: Program, *, user=None) -> None:
    """Delete a programme with its tiers and every contact's place in it (audited: the programme's
    and its tiers' delete events keep what they were and who deleted them)."""
    with transaction.atomic(), pghistory.context(user=getattr(user, "pk", None)):
        _lock_programs([program.pk], shared=False)
        program.delete()


def program_switch(program: Program, *, active: bool, user=None) -> bool:
    """Switch a programme off (its tiers freeze: no recompute, no refresh by events, no due
    downgrades or pin ends) or on again; returns whether it changed. Switching on does not
    recompute by itself: the caller starts the recompute that catches up."""
    with transaction.atomic(), pghistory.context(user=getattr(user, "pk", None)):
        _lock_programs([program.pk], shared=False)  # waits for a refresh or recompute under way
        changed = Program.objects.filter(pk=program.pk).exclude(active=active).update(
            active=active, updated_at=timezone.now())
    program.active = active
    return bool(changed)


class ProgramSwitchedOff(Exception):
    """The programme is switched off: its tiers are frozen."""


# --- recompute ----------------------------------------------------------------------------------
def program_recompute(program: Program, *, user=None, reason: str = "Full recompute", now: datetime | None = None) -> dict:
    """Every contact's tier in ``program``: one statement writing only the rows that change, as a
    new version, under the programme's exclusive lock (a concurrent run waits and then finds
    nothing to change). Retired tiers are deleted once nobody is in them. Returns the same numbers
    as ``tiers_preview`` (plus ``written`` and ``version``)."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_programs([program.pk], shared=False)
        if not Program.objects.filter(pk=program.pk, active=True).exists():
            return _frozen_result(program)
        version = _version_bump(program.pk, now)
        program = Program.objects.get(pk=program.pk)
        setup = _setup_for(program)
        counts = _write(setup, scope=ALL_CONTACTS, scope_params={}, now=now, version=version, reason=reason,
                        user_id=getattr(user, "pk", None))
        retired = list(program.tiers.filter(retired=True).values_list("pk", flat=True))
        if retired:
            # nobody is in them now; pins and pending drops to them were dropped by the plan
            with pghistory.context(user=getattr(user, "pk", None)):
                Tier.objects.filter(pk__in=retired).delete()
        summary = program_distribution(program, setup=setup)
    total = summary["total"]
    return {
        "up": counts["up"],
        "down": counts["down"],
        "unchanged": total - counts["up"] - counts["down"],
        "pending_down": summary["pending_down"],
        "no_tier": summary["no_tier"],
        "distribution": summary["distribution"],
        "written": counts["written"],
        "version": version,
    }


def _frozen_result(program: Program) -> dict:
    """A switched-off programme's "recompute": nothing moves; the numbers are the frozen tiers."""
    program = Program.objects.get(pk=program.pk)
    summary = program_distribution(program)
    return {"up": 0, "down": 0, "unchanged": summary["total"], "pending_down": summary["pending_down"],
            "no_tier": summary["no_tier"], "distribution": summary["distribution"], "written": 0,
            "version": program.version, "frozen": True}


def _version_bump(program_id: int, now: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_program SET version = version + 1, recomputed_at = %s WHERE id = %s RETURNING version",
            [now, program_id],
        )
        return cursor.fetchone()[0]


def program_distribution(program: Program, *, setup: _Setup | None = None) -> dict:
    """Contacts per tier now (from the stored tiers), with ``no_tier``, ``pending_down``, ``total``."""
    setup = setup or _setup_for(program)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tier_id, count(*), count(*) FILTER (WHERE downgrade_due_at IS NOT NULL) "
            "FROM loyalty_contacttier WHERE program_id = %s GROUP BY tier_id",
            [program.pk],
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM contacts_contact WHERE NOT is_anonymous")
        total = cursor.fetchone()[0]
    counts = {key: 0 for key, _ in sorted(setup.reachable, key=lambda pair: pair[1])}
    pending = in_tiers = 0
    for tier_id, count, row_pending in rows:
        pending += row_pending
        if tier_id is not None:
            counts[tier_id] = counts.get(tier_id, 0) + count
            in_tiers += count
    return {
        "distribution": {setup.names.get(key, str(key)): count for key, count in counts.items()},
        "no_tier": total - in_tiers,
        "pending_down": pending,
        "total": total,
    }


def on_contacts_changed(sender, contact_ids: list[int], deferred: bool = False, **kwargs) -> None:
    """``contacts_changed`` receiver: tiers follow tags, scores and purchases in the same
    transaction (cheap enough even on the rules engine's path, so never deferred)."""
    tiers_refresh_for_contacts(contact_ids)


def tiers_refresh_for_contacts(contact_ids: list[int]) -> None:
    """Bring the tiers of ``contact_ids`` up to date in every programme (the rules engine calls this
    inside its transaction after each batch of events). One statement per programme."""
    if not contact_ids:
        return
    candidates = list(Program.objects.filter(active=True).values_list("pk", flat=True))
    if not candidates:
        return
    _lock_programs(candidates, shared=True)
    # read again under the locks: a programme switched off meanwhile stays frozen
    programs = list(Program.objects.filter(pk__in=candidates, active=True)
                    .only("id", "metric", "downgrade_policy", "grace_days", "version"))
    tiers_by_program: dict[int, list[Tier]] = {}
    for tier in Tier.objects.filter(program__in=[program.pk for program in programs]):
        tiers_by_program.setdefault(tier.program_id, []).append(tier)
    now = timezone.now()
    ids = sorted(set(contact_ids))
    for program in programs:
        setup = _setup_from_tiers(program, tiers_by_program.get(program.pk, []))
        _write(setup, scope=SOME_CONTACTS, scope_params={"scope_ids": ids}, now=now, version=program.version,
               reason="New events", user_id=None)


def _setup_from_tiers(program: Program, tiers: list[Tier]) -> _Setup:
    return _Setup(
        program_id=program.pk,
        metric=program.metric,
        grace_days=program.grace_days if program.downgrade_policy == Program.Downgrade.GRACE else 0,
        reachable=[(tier.pk, tier.min) for tier in tiers if not tier.retired],
        ranks={tier.pk: tier.min for tier in tiers},
        names={tier.pk: tier.name for tier in tiers},
    )


def tiers_apply_due(*, now: datetime | None = None) -> int:
    """Apply downgrades whose grace period ended and end pins past their date (scheduled)."""
    now = now or timezone.now()
    moved = 0
    for program in Program.objects.filter(active=True):
        with transaction.atomic():
            _lock_programs([program.pk], shared=True)
            if not Program.objects.filter(pk=program.pk, active=True).exists():
                continue  # switched off meanwhile: frozen
            setup = _setup_for(program)
            counts = _write(setup, scope=DUE_CONTACTS, scope_params={}, now=now, version=program.version,
                            reason="Grace period or pin ended", user_id=None)
            moved += counts["up"] + counts["down"]
    return moved


# --- pins ---------------------------------------------------------------------------------------
def _check_active(program: Program) -> None:
    if not Program.objects.filter(pk=program.pk, active=True).exists():
        raise ProgramSwitchedOff(_("“%(name)s” is switched off: its tiers are frozen until it is switched on.")
                                 % {"name": program.name})


def tier_pin(program: Program, contact: Contact, tier: Tier, *, until: date, user=None, note: str = "") -> None:
    """Hold ``contact`` in ``tier`` until ``until`` (inclusive), whatever the metric says."""
    now = timezone.now()
    with transaction.atomic():
        _lock_programs([program.pk], shared=True)
        _check_active(program)
        ContactTier.objects.bulk_create(
            [ContactTier(program=program, contact=contact, pinned_tier=tier, pinned_until=until,
                         pinned_by=user if getattr(user, "pk", None) else None, pinned_note=note[:200],
                         version=program.version, since=now)],
            update_conflicts=True, unique_fields=["program", "contact"],
            update_fields=["pinned_tier", "pinned_until", "pinned_by", "pinned_note"],
        )
        # stored with the tier change: in the language of the person pinning
        params = {"tier": tier.name, "until": until.isoformat()}
        if getattr(user, "pk", None):
            reason = _("Pinned to %(tier)s until %(until)s by %(user)s") % {**params, "user": user.get_username()}
        else:
            reason = _("Pinned to %(tier)s until %(until)s") % params
        _write(_setup_for(program), scope=SOME_CONTACTS, scope_params={"scope_ids": [contact.pk]}, now=now,
               version=program.version, reason=reason,
               user_id=getattr(user, "pk", None))


def tier_unpin(program: Program, contact: Contact, *, user=None) -> None:
    now = timezone.now()
    with transaction.atomic():
        _lock_programs([program.pk], shared=True)
        _check_active(program)
        ContactTier.objects.filter(program=program, contact=contact).update(
            pinned_tier=None, pinned_until=None, pinned_by=None, pinned_note=""
        )
        if getattr(user, "pk", None):
            reason = _("Pin removed by %(user)s") % {"user": user.get_username()}
        else:
            reason = _("Pin removed")
        _write(_setup_for(program), scope=SOME_CONTACTS, scope_params={"scope_ids": [contact.pk]}, now=now,
               version=program.version, reason=reason, user_id=getattr(user, "pk", None))


# --- reading --------------------------------------------------------------------------------------
def contact_tiers(contact_id: int) -> dict[str, str | None]:
    """``{programme name: tier name or None}`` for every programme: the contact API's ``tiers``."""
    result: dict[str, str | None] = dict.fromkeys(Program.objects.order_by("name").values_list("name", flat=True))
    rows = ContactTier.objects.filter(contact_id=contact_id, tier__isnull=False).values_list("program__name", "tier__name")
    for program_name, tier_name in rows:
        result[program_name] = tier_name
    return result


def contact_metric_values(contact: Contact, programs: list[Program], *, now: datetime | None = None) -> dict[int, Decimal]:
    """The live metric value of one contact in each programme (the card shows how far the next tier is)."""
    now = now or timezone.now()
    values: dict[int, Decimal] = {}
    with connection.cursor() as cursor:
        for program in programs:
            query, params = metric_sql(program.metric, scope_sql=SOME_CONTACTS, now=now)
            if query is None:
                values[program.pk] = Decimal(contact.score)
                continue
            cursor.execute(f"SELECT metric_value FROM ({query}) q", {**params, "scope_ids": [contact.pk]})
            row = cursor.fetchone()
            values[program.pk] = Decimal(row[0]) if row and row[0] is not None else Decimal(0)
    return values


# --- the benchmark's hand-written twin ----------------------------------------------------------
def program_recompute_sql_reference(program: Program) -> int:
    """The same full recompute written by hand for the benchmark (immediate downgrades, no pins —
    the benchmark's programme): one INSERT … ON CONFLICT writing only rows whose tier or metric
    changes, plus the TierChange rows. Returns the number of rows written."""
    tiers = list(program.tiers.active().order_by("-min"))
    metric = program.metric
    now = timezone.now()
    params: dict = {"p": program.pk, "now": now}
    # thresholds inlined as literals (they are Decimals and ids from the database)
    case = ("CASE " + " ".join(f"WHEN s.v >= {Decimal(tier.min)} THEN {int(tier.pk)}" for tier in tiers) + " END") \
        if tiers else "NULL::bigint"
    if metric["type"] == "tag_score":
        params["tag"] = Tag.objects.filter(key=tag_key(metric["tag"])).values_list("id", flat=True).first() or 0
        source = ("SELECT c.id AS contact_id, COALESCE(ct.score, 0)::numeric(14,2) AS v FROM contacts_contact c "
                  "LEFT JOIN contacts_contacttag ct ON ct.contact_id = c.id AND ct.tag_id = %(tag)s")
    elif metric["type"] == "score":
        source = "SELECT c.id AS contact_id, c.score::numeric(14,2) AS v FROM contacts_contact c"
    else:
        aggregate = "count(*)" if metric["type"] == "purchase_count" else "sum(e.value)"
        window = ""
        if metric.get("within_days"):
            params["since"] = now - timedelta(days=int(metric["within_days"]))
            window = "AND e.occurred_at >= %(since)s"
        source = (f"SELECT c.id AS contact_id, COALESCE(a.v, 0)::numeric(14,2) AS v FROM contacts_contact c LEFT JOIN "
                  f"(SELECT e.contact_id, {aggregate} AS v FROM automation_event e WHERE e.type = 'purchase' {window} "
                  "GROUP BY e.contact_id) a ON a.contact_id = c.id")
    sql = f"""
    WITH changed AS MATERIALIZED (
        SELECT s.contact_id, s.v, {case} AS new_tier, cur.tier_id AS old_tier
        FROM ({source}) s
        LEFT JOIN loyalty_contacttier cur ON cur.program_id = %(p)s AND cur.contact_id = s.contact_id
        WHERE ({case}) IS DISTINCT FROM cur.tier_id
           OR s.v IS DISTINCT FROM COALESCE(cur.metric_value, 0)
    ),
    up AS (
        INSERT INTO loyalty_contacttier (program_id, contact_id, tier_id, metric_value, since, version, pinned_note)
        SELECT %(p)s, contact_id, new_tier, v, %(now)s, 0, '' FROM changed
        ON CONFLICT (program_id, contact_id) DO UPDATE
            SET tier_id = EXCLUDED.tier_id, metric_value = EXCLUDED.metric_value,
                since = CASE WHEN loyalty_contacttier.tier_id IS DISTINCT FROM EXCLUDED.tier_id
                             THEN EXCLUDED.since ELSE loyalty_contacttier.since END
        RETURNING 1
    ),
    log AS (
        INSERT INTO loyalty_tierchange (program_id, contact_id, from_tier, to_tier, direction, reason, created_at)
        SELECT %(p)s, ch.contact_id, COALESCE(o.name, ''), COALESCE(n.name, ''),
               CASE WHEN n.id IS NULL OR n.min < o.min THEN -1 ELSE 1 END, 'SQL reference recompute', %(now)s
        FROM changed ch LEFT JOIN loyalty_tier o ON o.id = ch.old_tier LEFT JOIN loyalty_tier n ON n.id = ch.new_tier
        WHERE ch.new_tier IS DISTINCT FROM ch.old_tier
    ),
    told AS (
        INSERT INTO core_outboxmessage (type, contact_id, program_id, data)
        SELECT 'loyalty.tier_changed', ch.contact_id, %(p)s, jsonb_build_object('from', o.name, 'to', n.name)
        FROM changed ch LEFT JOIN loyalty_tier o ON o.id = ch.old_tier LEFT JOIN loyalty_tier n ON n.id = ch.new_tier
        WHERE ch.new_tier IS DISTINCT FROM ch.old_tier
    )
    SELECT count(*) FROM up
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]
