"""``python manage.py seed_demo [--contacts N] [--reset]``: the demo shop, set-based and deterministic.

A Polish fashion & jewellery shop with a year of behaviour (see ``demo.datagen``). The
default, 5,000 contacts, is what ``make run`` loads on the first run.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from contacts.models import Contact
from demo import datagen


def reset_generated_data() -> None:
    """Empty every table the generator fills (and what hangs off contacts), in one statement."""
    tables = ", ".join(datagen.GENERATED_TABLES + ["segments_segmentmember", "segments_segmentsize",
                                                   "loyalty_tierchange"])
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            # TRUNCATE refuses tables with deferred FK checks still pending in this transaction
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"TRUNCATE {tables} CASCADE")


class Command(BaseCommand):
    help = "Load the demo shop (Polish fashion & jewellery) into an empty database: contacts, a year of events, tags, scores, funnel, loyalty."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=5000, help="How many contacts (default 5,000).")
        parser.add_argument(
            "--reset", action="store_true", help="Delete all contacts, events, tags, rules, segments … first."
        )

    def handle(self, *args, contacts: int, reset: bool, **options):
        if contacts < 1:
            raise CommandError("--contacts must be at least 1")
        if contacts > 5_000_000:
            raise CommandError("--contacts may be at most 5,000,000")
        if reset:
            reset_generated_data()
        elif Contact.objects.exists():
            raise CommandError("The database already has contacts. Use --reset to replace them with the demo shop.")
        verbose = options.get("verbosity", 1) >= 1
        echo = (lambda line: self.stdout.write(line)) if verbose else None
        if verbose:
            self.stdout.write(f"Generating the demo shop with {contacts:,} contacts…")
        report = datagen.generate(contacts=contacts, demo=True, echo=echo)
        if verbose:
            rows = report.rows
            self.stdout.write(
                self.style.SUCCESS(
                    f"Done in {report.seconds:.1f}s: {rows['contacts_contact']:,} contacts, "
                    f"{rows['automation_event']:,} events, {rows['contacts_contacttag']:,} contact tags, "
                    f"{rows['leads_scorechange']:,} score changes, {rows['contacts_tag']:,} tags, "
                    f"{rows['automation_rule']:,} rules, {rows['segments_segment']:,} segments (refreshed)."
                )
            )
