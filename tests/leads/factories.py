from __future__ import annotations

import factory
from django.db import connection

from leads.models import Funnel, Stage
from leads.scoring import score_add


class FunnelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Funnel

    name = factory.Sequence(lambda n: f"Funnel {n}")


def funnel_with_stages(name: str = "Sales", stages: tuple[str, ...] = ("New", "Engaged", "MQL", "SQL", "Customer")) -> Funnel:
    funnel = FunnelFactory(name=name)
    Stage.objects.bulk_create([Stage(funnel=funnel, name=stage, position=i) for i, stage in enumerate(stages)])
    return funnel


def give_points(contact, *deltas: int, rule_id: int | None = None, reason: str = "test") -> None:
    """Points through the real ledger writer, as the rules engine does."""
    with connection.cursor() as cursor:
        score_add(
            cursor,
            contact_ids=[contact.pk] * len(deltas),
            deltas=list(deltas),
            rule_ids=[rule_id] * len(deltas),
            reason=reason,
        )
    contact.refresh_from_db(fields=["score"])
