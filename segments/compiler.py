"""Compile a (validated) segment definition to ONE SQL condition on contacts.

``compile_definition(definition) -> Q`` is the whole contract: ``Contact.objects.filter(q)`` is
the segment, as one query, with every leaf shaped for an index at a million contacts (the
``contact_id`` column of the outer table when ``key="contact_id"``, see ``count_driver``):

======================  ==============================================================================
leaf                    SQL
======================  ==============================================================================
has_tag, tag_score      ``id IN (SELECT contact_id FROM contacttag WHERE tag_id = <id> AND score op N)``
                        — index ``(tag_id, score) INCLUDE (contact_id)``, index-only. At the top
                        level of an AND it is a semi-join; under OR / NOT a hashed set (the planner
                        mis-costs per-row EXISTS probes there at a million contacts: 6 s vs 1 s).
score, temperature      range on ``contacts_contact.score`` (``contact_score_idx``)
event_count             "at least one" → ``id IN (SELECT contact_id …)``; "none" → ``NOT IN``; any
                        other count → ``id IN (SELECT contact_id … GROUP BY contact_id HAVING
                        count(*) op N)`` (``NOT IN`` of the complement when a count of 0 satisfies
                        the comparison) over ``event_type_time_idx`` /
                        ``event_product_view_category_idx`` (``lower(properties->>'category')``)
purchase_total          the same shape over ``sum(value)`` of purchases (``event_purchase_idx``)
inactive_days           ``NOT (last_activity_at >= now - N days)`` (NULL: never active, matches);
                        negated it is the plain range ``last_activity_at >= …``
attribute               columns: ``lower(col) op lower(value)`` (``email``/``country`` use their
                        stored case so their indexes apply); ``properties.<key>``: jsonb, with
                        the rules' condition semantics (``core.conditions``)
age                     a ``birth_date`` range computed from today (index ``contact_birth_date_idx``)
consent                 ``[NOT] id IN (SELECT contact_id FROM consent WHERE channel = c AND granted)``
segment                 the referenced segment's definition, inlined (evaluated live)
stage, tier             ``id IN`` ``leads_contactstage`` / ``loyalty_contacttier`` by stage/tier id
======================  ==============================================================================

Shapes (measured with ``EXPLAIN (ANALYZE, BUFFERS)`` against the benchmark's hand-written SQL):

* an AND with two or more conditions on contact-keyed tables compiles to ONE semi-join driven by
  a membership table (``Compiler._compile_all``): under OR / NOT that is one hashed set of the
  intersection rather than one set per condition;
* an OR tests contacts' own columns first (PostgreSQL evaluates an OR's arms in order);
* a category match (``where``) on a plain word needs no ``jsonb_typeof`` guard
  (``_only_strings_render_as``), so the planner estimates the category index from statistics;
* counts (``segments.services.segment_count``) start from a driver table when the contacts table
  is not needed (``count_driver``) and run without parallel workers when a subquery sits under
  OR / NOT (each worker would rebuild the hashed subquery).

Every leaf compiles to a two-valued condition (never NULL), so ``NOT`` means exactly "the leaf
does not hold", as in the Python evaluator the property test compares against.

Names (tags, stages, tiers, referenced segments, temperature thresholds) are looked up before
the query is built — a handful of small indexed queries — so the planner sees constants and
estimates each leaf from real statistics. Time windows count back from ``now`` (evaluation time).

``contact_ids`` restricts the compiled condition to those contacts *inside* the aggregate
subqueries too (the incremental refresh and the per-contact "why" re-evaluate a few contacts
without aggregating everybody's events).
"""

from __future__ import annotations

import calendar
import datetime as dt
import operator
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import reduce
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    DecimalField,
    Expression,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Lower, StrIndex, Upper
from django.db.models.lookups import Exact, GreaterThan
from django.utils import timezone

from contacts.models import Consent, ContactTag, Event, Tag, tag_key
from contacts.signals import (
    CHANGED_ACTIVITY,
    CHANGED_CONSENT,
    CHANGED_FIELDS,
    CHANGED_SCORE,
    CHANGED_STAGE,
    CHANGED_TAGS,
    CHANGED_TIER,
    changed_events,
)
from core.conditions import compile_condition
from leads.models import ContactStage, Stage, TemperatureSettings
from leads.temperature import temperature_q
from loyalty.models import ContactTier, Tier
from segments.models import Segment
from segments.validation import segment_references

TRUE = Q(Value(True, output_field=BooleanField()))
FALSE = Q(Value(False, output_field=BooleanField()))

# Leaves whose truth changes with the clock (or with settings) although no contact data
# changed: segments using them need the scheduled full refresh, not only the incremental one.
TIME_RELATIVE_LEAVES = {"inactive_days", "age", "temperature"}


# --- small helpers ------------------------------------------------------------------------------
def _as_sql_number(value: Any) -> int | Value:
    """Integers stay integers (the planner keeps int columns' indexes); other numbers become
    exact decimal *expressions*: SQL and Python then compare the same value (0.1 is 0.1, not a
    binary float), and Django does not round them to the integer field's type."""
    if isinstance(value, int):
        return value
    if float(value).is_integer():
        return int(value)
    return Value(Decimal(repr(value)), output_field=DecimalField())


NUMBER_LOOKUPS = {"eq": "exact", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}


def number_q(field: str, op: str, value: Any) -> Q:
    """``field op value`` for a NOT NULL numeric field (or an aggregate alias)."""
    if op == "between":
        low, high = (_as_sql_number(item) for item in value)
        return Q(**{f"{field}__gte": low, f"{field}__lte": high})
    if op == "in":
        whole = sorted({int(item) for item in value if float(item).is_integer()})
        fractional = [item for item in value if not float(item).is_integer()]
        condition = Q(**{f"{field}__in": whole}) if whole else FALSE
        for item in fractional:
            condition |= Q(**{f"{field}__exact": _as_sql_number(item)})
        return condition
    if op == "ne":
        return ~Q(**{f"{field}__exact": _as_sql_number(value)})
    return Q(**{f"{field}__{NUMBER_LOOKUPS[op]}": _as_sql_number(value)})


def expression_number_q(expression, op: str, value: Any) -> Q:
    """``expression op value`` for a NOT NULL numeric expression (lookups, not field names)."""
    from django.db.models.lookups import GreaterThanOrEqual, LessThan, LessThanOrEqual

    lookups = {"eq": Exact, "gt": GreaterThan, "gte": GreaterThanOrEqual, "lt": LessThan, "lte": LessThanOrEqual}
    if op == "between":
        return Q(GreaterThanOrEqual(expression, _as_sql_number(value[0]))) & Q(
            LessThanOrEqual(expression, _as_sql_number(value[1])))
    if op == "in":
        return reduce(operator.or_, (Q(Exact(expression, _as_sql_number(item))) for item in value))
    if op == "ne":
        return ~Q(Exact(expression, _as_sql_number(value)))
    return Q(lookups[op](expression, _as_sql_number(value)))


def number_holds(op: str, number: Any, value: Any) -> bool:
    """The same comparison in Python (used to decide whether a count of 0 satisfies it)."""
    to_decimal: Callable[[Any], Decimal] = lambda item: Decimal(repr(item)) if isinstance(item, float) else Decimal(item)  # noqa: E731
    number = to_decimal(number)
    if op == "between":
        return to_decimal(value[0]) <= number <= to_decimal(value[1])
    if op == "in":
        return any(number == to_decimal(item) for item in value)
    target = to_decimal(value)
    return {
        "eq": operator.eq,
        "ne": operator.ne,
        "gt": operator.gt,
        "gte": operator.ge,
        "lt": operator.lt,
        "lte": operator.le,
    }[op](number, target)


def years_before(today: dt.date, years: int) -> dt.date:
    """The same day ``years`` earlier; 29 February falls back to the 28th."""
    year = today.year - years
    if today.month == 2 and today.day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return today.replace(year=year)


def age_q(op: str, value: Any, today: dt.date) -> Q:
    """Whole-years age as birth-date ranges. ``age >= N`` ⟺ ``birth_date <= years_before(today, N)``
    (age is monotone in the birth date), from which the other comparisons follow."""

    def at_least(years: int) -> Q:
        return Q(birth_date__lte=years_before(today, years)) if years > 0 else Q(birth_date__lte=today)

    def at_most(years: int) -> Q:
        return Q(birth_date__gt=years_before(today, years + 1))

    def exactly(years: int) -> Q:
        return at_least(years) & at_most(years)

    if op == "gte":
        condition = at_least(int(value))
    elif op == "gt":
        condition = at_least(int(value) + 1)
    elif op == "lte":
        condition = at_most(int(value))
    elif op == "lt":
        condition = at_most(int(value) - 1) if int(value) > 0 else FALSE
    elif op == "eq":
        condition = exactly(int(value))
    elif op == "ne":
        condition = ~exactly(int(value))
    elif op == "between":
        condition = at_least(int(value[0])) & at_most(int(value[1]))
    else:  # in
        condition = reduce(operator.or_, (exactly(int(item)) for item in value))
    return Q(birth_date__isnull=False) & condition


class JsonbCondition(Expression):
    """A rule-style condition (``core.conditions``) on a jsonb column of the current
    query's table, as a boolean SQL expression that is never NULL.

    The column is a resolved ``F`` so it follows Django's table aliases (``U0`` inside
    subqueries); the SQL itself comes from ``compile_condition``, so segments and rules share
    one definition of "category eq kurtki".
    """

    conditional = True
    output_field = BooleanField()

    def __init__(self, column: str | Expression, condition: dict) -> None:
        super().__init__(output_field=BooleanField())
        self.column = F(column) if isinstance(column, str) else column
        self.condition = condition

    def get_source_expressions(self) -> list:
        return [self.column]

    def set_source_expressions(self, expressions: list) -> None:
        (self.column,) = expressions

    def resolve_expression(self, query=None, allow_joins=True, reuse=None, summarize=False, for_save=False):
        clone = self.copy()
        clone.column = self.column.resolve_expression(query, allow_joins, reuse, summarize, for_save)
        return clone

    def as_sql(self, compiler, connection):
        column_sql, column_params = compiler.compile(self.column)
        sql, params = compile_condition(self.condition, properties_sql=column_sql)
        return f"({sql})", [*column_params, *params]


class JsonbIsEmpty(JsonbCondition):
    """``properties.<key>`` is missing, JSON null or the empty string."""

    def as_sql(self, compiler, connection):
        column_sql, column_params = compiler.compile(self.column)
        key = self.condition["property"].replace("'", "''").replace("%", "%%")
        value_sql = f"({column_sql} -> '{key}')"
        return (
            f"coalesce(jsonb_typeof({value_sql}) = 'null' OR {value_sql} = '\"\"'::jsonb, true)",
            list(column_params),
        )


def event_where_q(conditions: list[dict]) -> Q:
    """An event's ``where`` conditions. ``eq``/``in`` on a string use exactly the expression of
    the partial index ``lower(properties ->> 'category')`` (and the same ``jsonb_typeof``
    guard as the rules' semantics); everything else is ``core.conditions`` verbatim."""
    result = Q()
    for condition in conditions:
        op, value, name = condition["op"], condition["value"], condition["property"]
        strings = value if op == "in" and isinstance(value, list) else [value]
        if op in ("eq", "in") and all(isinstance(item, str) for item in strings):
            text = Lower(_KeyText(name))
            matches = reduce(operator.or_, (Q(Exact(text, Lower(Value(item)))) for item in strings))
            if not all(_only_strings_render_as(item) for item in strings):
                matches &= Q(Exact(_JsonbTypeof(name), "string"))
            result &= matches
        else:
            result &= Q(JsonbCondition("properties", condition))
    return result


def _only_strings_render_as(value: str) -> bool:
    """Whether only a JSON *string* can have ``->>`` text equal to ``value`` case-insensitively.

    ``->>`` renders a non-string as JSON text: numbers start with ``-`` or a digit, booleans are
    ``true``/``false``, objects and arrays start with ``{``/``[`` and null is SQL NULL. A value
    that starts with an ASCII letter and is not a boolean word cannot equal any of those, so the
    ``jsonb_typeof = 'string'`` guard is redundant for it — and dropping it lets the planner
    estimate the category index's rows from statistics (the extra filter made it guess 1 row and
    sort instead of hashing)."""
    return value[:1].isascii() and value[:1].isalpha() and value.lower() not in ("true", "false")


class _KeyText(Expression):
    """``properties ->> 'key'`` with the key as a literal: the form the expression index has
    (Django's own KeyTextTransform passes the key as a parameter, fine for client-side binding
    but not guaranteed to match the index under server-side binding)."""

    def __init__(self, key: str, column: str = "properties") -> None:
        from django.db.models import TextField

        super().__init__(output_field=TextField())
        self.key = key
        self.column: Any = F(column)

    def get_source_expressions(self) -> list:
        return [self.column]

    def set_source_expressions(self, expressions: list) -> None:
        (self.column,) = expressions

    def resolve_expression(self, query=None, allow_joins=True, reuse=None, summarize=False, for_save=False):
        clone = self.copy()
        clone.column = self.column.resolve_expression(query, allow_joins, reuse, summarize, for_save)
        return clone

    def as_sql(self, compiler, connection):
        column_sql, params = compiler.compile(self.column)
        key = self.key.replace("'", "''").replace("%", "%%")
        return f"({column_sql} ->> '{key}')", params


class _JsonbTypeof(_KeyText):
    def __init__(self, key: str, column: str = "properties") -> None:
        super().__init__(key, column)
        from django.db.models import CharField

        self.output_field = CharField()

    def as_sql(self, compiler, connection):
        column_sql, params = compiler.compile(self.column)
        key = self.key.replace("'", "''").replace("%", "%%")
        return f"jsonb_typeof({column_sql} -> '{key}')", params


# --- the compiler -------------------------------------------------------------------------------
# Restricted to fewer contacts than this, an event aggregate is answered per contact (correlated);
# from this many on, as one grouped set over the contacts' events.
PER_CONTACT_AGGREGATES_BELOW = 200


class Compiler:
    """Compiles definitions against the database as it is now. One instance may compile many
    definitions: name lookups are cached (the incremental refresh compiles every segment)."""

    def __init__(self, *, now: dt.datetime | None = None, contact_ids: list[int] | None = None,
                 key: str = "pk") -> None:
        self.now = now or timezone.now()
        # The column holding the contact id in the outer query: "pk" on contacts, "contact_id"
        # when a count is driven from a contact-keyed table (see ``segments.services``).
        self.key = key
        self.today = timezone.localdate(self.now)
        self.contact_ids = sorted(set(contact_ids)) if contact_ids is not None else None
        self.tag_ids: dict[str, int | None] = {}
        self.segments: dict[int, Any] = {}
        self.stage_ids: dict[tuple[str, str], list[int]] = {}
        self.tier_ids: dict[tuple[str, str], list[int]] = {}
        self._thresholds = None

    def with_key(self, key: str) -> Compiler:
        """The same compiler (and name caches) for an outer query keyed by ``key``."""
        clone = Compiler(now=self.now, contact_ids=self.contact_ids, key=key)
        clone.tag_ids, clone.segments = self.tag_ids, self.segments
        clone.stage_ids, clone.tier_ids, clone._thresholds = self.stage_ids, self.tier_ids, self._thresholds
        return clone

    # --- name resolution (batched) ----------------------------------------------------------
    def prefetch(self, definitions: Iterable[Any]) -> None:
        """Resolve every name used by ``definitions`` (and the segments they nest) in a few
        queries instead of one per leaf."""

        pending = list(definitions)
        tag_keys: set[str] = set()
        stages: set[tuple[str, str]] = set()
        tiers: set[tuple[str, str]] = set()
        while pending:
            segment_ids: set[int] = set()
            for definition in pending:
                for leaf in iter_leaves(definition):
                    kind = leaf.get("type")
                    if kind in ("has_tag", "tag_score"):
                        tag_keys.add(tag_key(leaf["tag"]))
                    elif kind == "stage":
                        stages.add((leaf["funnel"].strip().lower(), leaf["stage"].strip().lower()))
                    elif kind == "tier":
                        tiers.add((leaf["program"].strip().lower(), leaf["tier"].strip().lower()))
                segment_ids.update(ref for ref in segment_references(definition) if ref not in self.segments)
            pending = []
            if segment_ids:
                found = {
                    segment.pk: segment
                    for segment in Segment.objects.filter(pk__in=segment_ids).only("pk", "definition", "for_sending")
                }
                for segment_id in segment_ids:
                    segment = found.get(segment_id)
                    self.segments[segment_id] = effective_definition(segment) if segment else None
                    if segment:
                        pending.append(self.segments[segment_id])
        missing_tags = tag_keys - set(self.tag_ids)
        if missing_tags:
            found_tags = dict(Tag.objects.filter(key__in=missing_tags).order_by().values_list("key", "pk"))
            for key in missing_tags:
                self.tag_ids[key] = found_tags.get(key)
        for key in stages - set(self.stage_ids):
            funnel, stage = key
            self.stage_ids[key] = list(
                Stage.objects.filter(funnel__name__iexact=funnel, name__iexact=stage).values_list("pk", flat=True)
            )
        for key in tiers - set(self.tier_ids):
            program, tier = key
            self.tier_ids[key] = list(
                Tier.objects.filter(program__name__iexact=program, name__iexact=tier).values_list("pk", flat=True)
            )

    @property
    def thresholds(self):
        if self._thresholds is None:

            self._thresholds = TemperatureSettings.current()
        return self._thresholds

    # --- tree -------------------------------------------------------------------------------
    def compile(self, node: Any, _segment_stack: tuple[int, ...] = ()) -> Q:
        if "all" in node:
            children = self._compile_all(node["all"], _segment_stack)
            return reduce(operator.and_, children) if children else TRUE
        if "any" in node:
            # Column tests first: PostgreSQL evaluates an OR's arms in the written order, so a
            # contact that passes ``score >= 100`` never probes the subquery arms.
            ordered = sorted(node["any"], key=lambda child: 0 if _is_column_test(child) else 1)
            children = [self.compile(child, _segment_stack) for child in ordered]
            return reduce(operator.or_, children) if children else FALSE
        if "not" in node:
            return ~self.compile(node["not"], _segment_stack)
        return getattr(self, f"leaf_{node['type']}")(node, _segment_stack)

    def _compile_all(self, nodes: list, stack: tuple[int, ...]) -> list[Q]:
        """The conditions of an AND. Two or more conditions answered from contact-keyed tables
        become ONE semi-join driven by a membership table: ``id IN (SELECT contact_id FROM
        contacttag WHERE tag = A AND contact_id IN (… tag B …))``. Under OR / NOT that is one
        hashed set of the intersection instead of one per condition (each built by every
        parallel worker); at the top level PostgreSQL flattens it into the same semi-joins."""
        keyed = [node for node in nodes if self.keyed_only(node)]
        driver_index = next((index for index, node in enumerate(keyed) if _driver_kind(node)), None)
        if len(keyed) < 2 or driver_index is None:
            return [self.compile(child, stack) for child in nodes]
        driver, rest = keyed[driver_index], keyed[:driver_index] + keyed[driver_index + 1:]
        rows = self.leaf_rows(driver)
        if rows is None:
            return [FALSE]  # an unknown tag / stage / tier: nobody matches the AND
        by_contact = self.with_key("contact_id")
        rows = rows.filter(reduce(operator.and_, (by_contact.compile(child, stack) for child in rest)))
        others = [self.compile(child, stack) for child in nodes if not any(child is item for item in keyed)]
        return [self._member_of(rows), *others]

    def keyed_only(self, node: Any) -> bool:
        """Whether ``node`` reads only contact-keyed tables (no ``contacts_contact`` column), so
        it can be compiled against any table's ``contact_id``. Conservative: a referenced segment
        that was not looked up yet counts as needing the contacts table."""
        for leaf in iter_leaves(node):
            kind = leaf.get("type")
            if kind == "segment":
                if leaf["segment_id"] not in self.segments:
                    return False
            elif kind not in RELATED_ONLY_LEAVES:
                return False
        return not needs_contact_row(node, self)

    def leaf_rows(self, leaf: dict):
        """The membership rows of a driver leaf (``_driver_kind``), or None when its name is
        unknown (nobody matches)."""
        kind = leaf["type"]
        if kind in ("has_tag", "tag_score"):
            key = tag_key(leaf["tag"])
            if key not in self.tag_ids:
                self.prefetch([leaf])
            tag_id = self.tag_ids.get(key)
            if tag_id is None:
                return None
            rows = ContactTag.objects.filter(tag_id=tag_id)
            return rows.filter(number_q("score", leaf["op"], leaf["value"])) if kind == "tag_score" else rows
        if kind == "consent":
            return Consent.objects.filter(channel=leaf["channel"].strip().lower(), granted=True)
        if kind == "stage":

            key = (leaf["funnel"].strip().lower(), leaf["stage"].strip().lower())
            if key not in self.stage_ids:
                self.prefetch([leaf])
            return ContactStage.objects.filter(stage_id__in=self.stage_ids[key]) if self.stage_ids[key] else None

        key = (leaf["program"].strip().lower(), leaf["tier"].strip().lower())
        if key not in self.tier_ids:
            self.prefetch([leaf])
        return ContactTier.objects.filter(tier_id__in=self.tier_ids[key]) if self.tier_ids[key] else None

    def _member_of(self, rows) -> Q:
        """``<key> IN (SELECT contact_id FROM rows)``: a semi-join at the top level, a hashed
        set under OR / NOT (EXISTS there lets the planner probe per row, which it mis-costs at a
        million contacts)."""
        return Q(**{f"{self.key}__in": self._restricted(rows).values("contact_id")})

    def _restricted(self, queryset):
        if self.contact_ids is not None:
            return queryset.filter(contact_id__any=self.contact_ids)
        return queryset

    def _days_ago(self, days: int) -> dt.datetime:
        return self.now - dt.timedelta(days=int(days))

    # --- leaves -----------------------------------------------------------------------------
    def _rows_member_of(self, leaf: dict) -> Q:
        rows = self.leaf_rows(leaf)
        return FALSE if rows is None else self._member_of(rows)  # unknown name: nobody

    def leaf_has_tag(self, leaf: dict, _stack) -> Q:
        return self._rows_member_of(leaf)

    def leaf_tag_score(self, leaf: dict, _stack) -> Q:
        return self._rows_member_of(leaf)

    def leaf_score(self, leaf: dict, _stack) -> Q:
        return number_q("score", leaf["op"], leaf["value"])

    def leaf_temperature(self, leaf: dict, _stack) -> Q:

        return temperature_q(leaf["value"], self.thresholds)

    def _aggregate_leaf(self, events, aggregate, op: str, value: Any, *, exists_shortcuts: bool) -> Q:
        """Contacts whose aggregate over ``events`` satisfies ``op value``; contacts without any
        such event have the aggregate 0."""
        if self.contact_ids is not None and len(self.contact_ids) < PER_CONTACT_AGGREGATES_BELOW:
            # A few contacts (the card's "why", a small batch): one correlated aggregate per
            # contact, which can only be answered through the contact-leading indexes
            # (event_contact_time_idx, event_purchase_idx). As a set, the planner may prefer
            # the category index and filter a month of everybody's views.
            per_contact = (
                events.filter(contact_id=OuterRef(self.key)).order_by().values("contact_id")
                .annotate(aggregate_value=aggregate).values("aggregate_value")
            )
            output = aggregate.output_field if hasattr(aggregate, "output_field") else None
            total = Coalesce(Subquery(per_contact), Value(0), output_field=output)
            return expression_number_q(total, op, value)
        zero_holds = number_holds(op, 0, value)
        if exists_shortcuts:
            # "at least one" and "none" need no counting: a (NOT) EXISTS semi/anti-join.
            holds_for_one = number_holds(op, 1, value)
            if not zero_holds and holds_for_one and _monotone_from_one(op, value):
                return self._member_of(events)
            if zero_holds and not holds_for_one and _false_from_one(op, value):
                return ~self._member_of(events)
        # (many contacts of a batch: the set of their events, grouped; a month of everybody's
        # views read through the category index costs less than thousands of per-contact probes
        # into every monthly partition)
        grouped = self._restricted(events).order_by().values("contact_id").annotate(aggregate_value=aggregate)
        holds = number_q("aggregate_value", op, value)
        if zero_holds:
            # Contacts without events satisfy it: everybody except those whose non-zero
            # aggregate fails the comparison.
            return ~Q(**{f"{self.key}__in": grouped.filter(~holds).values("contact_id")})
        return Q(**{f"{self.key}__in": grouped.filter(holds).values("contact_id")})

    def _aggregate_source(self, leaf: dict):
        """``(events, aggregate, exists_shortcuts)`` of an event_count / purchase_total leaf."""
        if leaf["type"] == "event_count":
            events = Event.objects.filter(type=leaf["event_type"])
            aggregate: Any = Count("*")
        else:
            events = Event.objects.filter(type="purchase")
            aggregate = Coalesce(Sum("value"), Value(Decimal(0)), output_field=DecimalField(max_digits=20, decimal_places=2))
        if leaf.get("within_days") is not None:
            events = events.filter(occurred_at__gte=self._days_ago(leaf["within_days"]))
        if leaf.get("where"):
            events = events.filter(event_where_q(leaf["where"]))
        return events, aggregate, leaf["type"] == "event_count"

    def aggregate_rows(self, leaf: dict):
        """For a count driven by events: one row per contact (``contact_id``) that satisfies an
        event_count / purchase_total leaf, or None when a contact without events satisfies it
        (then the events cannot enumerate the members)."""
        events, aggregate, exists_shortcuts = self._aggregate_source(leaf)
        op, value = leaf["op"], leaf["value"]
        if number_holds(op, 0, value):
            return None
        events = self._restricted(events).order_by()
        if exists_shortcuts and number_holds(op, 1, value) and _monotone_from_one(op, value):
            return events.values("contact_id").distinct()
        grouped = events.values("contact_id").annotate(aggregate_value=aggregate)
        return grouped.filter(number_q("aggregate_value", op, value)).values("contact_id")

    def leaf_event_count(self, leaf: dict, _stack) -> Q:
        events, aggregate, exists_shortcuts = self._aggregate_source(leaf)
        return self._aggregate_leaf(events, aggregate, leaf["op"], leaf["value"], exists_shortcuts=exists_shortcuts)

    def leaf_purchase_total(self, leaf: dict, _stack) -> Q:
        events, aggregate, exists_shortcuts = self._aggregate_source(leaf)
        return self._aggregate_leaf(events, aggregate, leaf["op"], leaf["value"], exists_shortcuts=exists_shortcuts)

    def leaf_inactive_days(self, leaf: dict, _stack) -> Q:
        # Written as "not active since": under NOT it becomes the plain range
        # ``last_activity_at >= cutoff`` (contact_last_activity_idx); never active matches.
        return ~Q(last_activity_at__gte=self._days_ago(leaf["value"]))

    def leaf_attribute(self, leaf: dict, _stack) -> Q:
        name, op, value = leaf["name"], leaf["op"], leaf.get("value")
        if name.startswith("properties."):
            return self._property_attribute(name.removeprefix("properties."), op, value)
        return self._column_attribute(name, op, value)

    def _column_attribute(self, name: str, op: str, value: Any) -> Q:
        present = ~Q(**{name: ""})
        if op == "is_empty":
            return Q(**{name: ""})
        if op == "not_empty":
            return present

        # Emails are stored lower-case and countries upper-case: compare in the stored case so
        # the unique email index and the (country, city) index answer.
        def equals(item: str) -> Q:
            if name == "email":
                return Q(Exact(F("email"), Lower(Value(item.strip()))))
            if name == "country":
                return Q(Exact(F("country"), Upper(Value(item.strip()))))
            return Q(Exact(Lower(name), Lower(Value(item))))

        if op == "eq":
            return present & equals(value)
        if op == "ne":
            return present & ~equals(value)
        if op == "in":
            return present & reduce(operator.or_, (equals(item) for item in value))
        # contains: a substring, case-insensitively (strpos: no LIKE wildcards to escape)
        return present & Q(GreaterThan(StrIndex(Lower(name), Lower(Value(value))), 0))

    def _property_attribute(self, key: str, op: str, value: Any) -> Q:
        if op in ("is_empty", "not_empty"):
            empty = Q(JsonbIsEmpty("properties", {"property": key}))
            return empty if op == "is_empty" else ~empty
        if op == "between":
            low = JsonbCondition("properties", {"property": key, "op": "gte", "value": value[0]})
            high = JsonbCondition("properties", {"property": key, "op": "lte", "value": value[1]})
            return Q(low) & Q(high)
        return Q(JsonbCondition("properties", {"property": key, "op": op, "value": value}))

    def leaf_age(self, leaf: dict, _stack) -> Q:
        return age_q(leaf["op"], leaf["value"], self.today)

    def leaf_consent(self, leaf: dict, _stack) -> Q:
        granted = self._member_of(self.leaf_rows(leaf))
        return granted if leaf["value"] else ~granted

    def leaf_segment(self, leaf: dict, stack: tuple[int, ...]) -> Q:
        segment_id = leaf["segment_id"]
        if segment_id in stack:
            return FALSE  # a cycle slipped past validation (a concurrent edit): match nobody
        if segment_id not in self.segments:
            self.prefetch([leaf])
        definition = self.segments.get(segment_id)
        if definition is None:
            return FALSE  # deleted since: nobody is a member of a segment that is gone
        return self.compile(definition, (*stack, segment_id))

    def leaf_stage(self, leaf: dict, _stack) -> Q:
        return self._rows_member_of(leaf)

    def leaf_tier(self, leaf: dict, _stack) -> Q:
        return self._rows_member_of(leaf)


# Leaves answered from tables keyed by contact_id alone (no contacts_contact column): a
# definition made only of these can be counted without reading the contacts table.
RELATED_ONLY_LEAVES = {"has_tag", "tag_score", "event_count", "purchase_total", "consent", "stage", "tier"}


def needs_contact_row(node: Any, compiler: Compiler, _seen: frozenset[int] = frozenset()) -> bool:
    for leaf in iter_leaves(node):
        kind = leaf.get("type")
        if kind == "segment":
            segment_id = leaf["segment_id"]
            nested = compiler.segments.get(segment_id)
            if segment_id in _seen or (nested is not None and needs_contact_row(nested, compiler, _seen | {segment_id})):
                return True
        elif kind not in RELATED_ONLY_LEAVES:
            return True
    return False


def count_driver(definition: Any, compiler: Compiler):
    """For a count: ``(queryset, remaining nodes)`` when the definition is an AND whose every
    condition is answered from contact-keyed tables and one of them can enumerate its members
    one row per contact: a tag (``tag_id = X AND score >= N`` is an index-only count), a stage
    or tier, an event aggregate that 0 does not satisfy (the grouped events), or email consent.
    The count then runs on those rows with the other conditions as semi-joins on their
    ``contact_id``; the contacts table is never read. ``None`` when the plain query is the
    right one.

    Correct because each driver row is unique per contact (a tag / channel / funnel / programme
    row per contact; one group per contact) and its contact always exists (foreign key)."""
    flattened = top_level_conditions(definition)
    if not flattened or not compiler.keyed_only({"all": flattened}):
        return None

    def rest_of(index: int) -> list:
        return flattened[:index] + flattened[index + 1:]

    # Preference: the most selective kinds first (a tag is usually a few % of contacts; email
    # consent is most of them).
    for index, node in enumerate(flattened):
        kind = _driver_kind(node)
        if kind in ("has_tag", "tag_score"):
            # The tag id as a scalar subquery when it was not looked up: no extra round trip.
            key = tag_key(node["tag"])
            known = compiler.tag_ids.get(key) if key in compiler.tag_ids else None
            tag_id = known if known is not None else Subquery(Tag.objects.filter(key=key).order_by().values("pk")[:1])
            rows = ContactTag.objects.filter(tag_id=tag_id)
            if kind == "tag_score":
                rows = rows.filter(number_q("score", node["op"], node["value"]))
            return rows, rest_of(index)
    for index, node in enumerate(flattened):
        if _driver_kind(node) in ("stage", "tier"):
            rows = compiler.leaf_rows(node)
            if rows is None:
                return ContactTag.objects.none(), []
            # ContactStage is unique per (contact, funnel), ContactTier per (contact, programme):
            # several matching stage/tier ids may span funnels — count distinct contacts then.
            return rows.values("contact_id").distinct(), rest_of(index)
    for index, node in enumerate(flattened):
        if isinstance(node, dict) and node.get("type") in ("event_count", "purchase_total"):
            rows = compiler.aggregate_rows(node)
            if rows is not None:
                return rows, rest_of(index)
    for index, node in enumerate(flattened):
        if _driver_kind(node) == "consent":
            return compiler.leaf_rows(node), rest_of(index)
    return None


# Leaves on contacts_contact's own columns: cheap to test per row (no subquery).
COLUMN_LEAVES = {"score", "temperature", "inactive_days", "attribute", "age"}


def _is_column_test(node: Any) -> bool:
    leaves = list(iter_leaves(node))
    return bool(leaves) and all(leaf.get("type") in COLUMN_LEAVES for leaf in leaves)


def _driver_kind(node: Any) -> str | None:
    """The leaves whose rows can drive a contact-keyed semi-join (``Compiler.leaf_rows``)."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if kind in ("has_tag", "tag_score", "stage", "tier") or (kind == "consent" and node.get("value") is True):
        return kind
    return None


def _monotone_from_one(op: str, value: Any) -> bool:
    """True when ``op value`` holds for every count >= 1 (so it means "at least one")."""
    if op in ("gt", "gte"):
        return True
    if op == "ne":
        return number_holds(op, 1, value) and Decimal(repr(value) if isinstance(value, float) else value) < 1
    return False


def _false_from_one(op: str, value: Any) -> bool:
    """True when ``op value`` fails for every count >= 1 (so it means "none")."""
    if op in ("lt", "lte"):
        return True
    if op == "eq":
        return True  # 0 satisfies it and 1 does not: the value is 0
    if op == "between":
        return True  # 0 is inside, 1 is outside: the range is [≤0, <1]
    if op == "in":
        return all(float(item) < 1 for item in value)  # 0 is listed, no count from 1 up is
    return False


# --- public API ---------------------------------------------------------------------------------
def iter_leaves(node: Any):
    """Every leaf of a definition (not following segment references)."""
    if not isinstance(node, dict):
        return
    if "all" in node or "any" in node:
        for child in node.get("all", node.get("any")) or []:
            yield from iter_leaves(child)
    elif "not" in node:
        yield from iter_leaves(node["not"])
    elif "type" in node:
        yield node


EMAIL_CONSENT = {"type": "consent", "channel": "email", "value": True}

# What can move a contact in or out of a leaf (``contacts.signals``' CHANGED_* names). Time moves
# the time-relative leaves too: their segments are refreshed on a schedule for that.
LEAF_CHANGES: dict[str, frozenset[str]] = {
    "has_tag": frozenset({CHANGED_TAGS}),
    "tag_score": frozenset({CHANGED_TAGS}),
    "score": frozenset({CHANGED_SCORE}),
    "temperature": frozenset({CHANGED_SCORE}),
    "purchase_total": frozenset({changed_events("purchase")}),
    "inactive_days": frozenset({CHANGED_ACTIVITY}),
    "attribute": frozenset({CHANGED_FIELDS}),
    "age": frozenset({CHANGED_FIELDS}),
    "consent": frozenset({CHANGED_CONSENT}),
    "stage": frozenset({CHANGED_STAGE}),
    "tier": frozenset({CHANGED_TIER}),
}


def definition_changes(node: Any, segments: dict[int, Any], _seen: frozenset[int] = frozenset()) -> frozenset[str] | None:
    """The changes that can move a contact in or out of ``node`` (following segment references
    through ``segments``, id → definition), or None when any change can (a leaf this does not
    know, or a segment ``segments`` does not hold). A reference to a segment that is gone (None
    there), or a cycle, matches nobody: nothing moves it."""
    needs: set[str] = set()
    for leaf in iter_leaves(node):
        kind = leaf.get("type")
        if kind == "segment":
            segment_id = leaf.get("segment_id")
            if segment_id not in segments:
                return None  # not read yet: assume anything
            nested = segments[segment_id]
            if nested is None or segment_id in _seen:
                continue
            nested_needs = definition_changes(nested, segments, _seen | {segment_id})
            if nested_needs is None:
                return None
            needs |= nested_needs
        elif kind == "event_count" and isinstance(leaf.get("event_type"), str):
            needs.add(changed_events(leaf["event_type"]))
        elif kind in LEAF_CHANGES:
            needs |= LEAF_CHANGES[kind]
        else:
            return None
    return frozenset(needs)


def top_level_conditions(definition: Any) -> list[Any]:
    """The conditions every member must pass: the definition's AND opened up, nested ANDs too
    (``{"all": [a, {"all": [b, c]}]}`` gives a, b, c); anything else is one condition."""
    pending, conditions = [definition], []
    while pending:
        node = pending.pop(0)
        if isinstance(node, dict) and "all" in node:
            pending = list(node["all"] or []) + pending
        else:
            conditions.append(node)
    return conditions


def _is_email_consent(node: Any) -> bool:
    return (isinstance(node, dict) and node.get("type") == "consent" and node.get("value") is True
            and isinstance(node.get("channel"), str) and node["channel"].strip().lower() == "email")


def effective_definition(segment) -> Any:
    """What a saved segment selects: its definition, AND email consent when it is meant for
    sending (the "exclude no-consent contacts" switch).

    Not added when the definition's top-level AND already requires email consent: the same
    condition twice is the same set, but PostgreSQL builds (and hash-joins) the consent subquery
    once per copy — about three times the count's time at 100k contacts. Consent under OR / NOT
    does not require it of every member, so the switch still adds it there."""
    definition = segment.definition
    if getattr(segment, "for_sending", False) and not any(
            _is_email_consent(node) for node in top_level_conditions(definition)):
        return {"all": [definition, EMAIL_CONSENT]}
    return definition


def compile_definition(definition: Any, *, now: dt.datetime | None = None,
                       contact_ids: list[int] | None = None, compiler: Compiler | None = None) -> Q:
    """The segment as a ``Q`` on ``Contact``: ``Contact.objects.filter(q)`` is one SQL query.

    ``definition`` must be valid (``segments.validation.validate_definition``).
    """
    compiler = compiler or Compiler(now=now, contact_ids=contact_ids)
    compiler.prefetch([definition])
    return compiler.compile(definition)


def is_time_relative(definition: Any, *, _seen: frozenset[int] = frozenset()) -> bool:
    """Whether membership can change with the clock alone (time windows, inactivity, age,
    temperature thresholds) — also through nested segments."""

    for leaf in iter_leaves(definition):
        kind = leaf.get("type")
        if kind in TIME_RELATIVE_LEAVES:
            return True
        if kind in ("event_count", "purchase_total") and leaf.get("within_days") is not None:
            return True
        if kind == "segment" and leaf["segment_id"] not in _seen:
            nested = Segment.objects.filter(pk=leaf["segment_id"]).first()
            if nested is not None and is_time_relative(nested.definition, _seen=_seen | {leaf["segment_id"]}):
                return True
    return False
