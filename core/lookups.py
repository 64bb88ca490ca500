"""``field__any=[…]``: ``field = ANY(%s::type[])``, the list bound as ONE array parameter.

Django's ``__in`` writes one placeholder per value (``IN (%s, %s, …)``): with the thousands of
contact ids a rules-engine batch hands to the membership refresh, the query text, its
composition in Python and its parsing in PostgreSQL all grow with the list — for every segment
and every leaf that repeats it. The plan is the same (PostgreSQL reads ``IN (…)`` as
``= ANY(array)``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: Any) -> tuple[str, list]:
        return "%s", [list(value)]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        db_type = self.lhs.output_field.db_type(connection)
        return f"{lhs} = ANY({rhs}::{db_type}[])", [*lhs_params, *rhs_params]


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # foreign keys keep lookups of their own
