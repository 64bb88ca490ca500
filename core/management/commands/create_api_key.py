from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key and print it (alone on the last line). Only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", choices=[ApiKey.SCOPE_ADMIN, ApiKey.SCOPE_INGEST], required=True)

    def handle(self, *args, name: str, scope: str, **options):
        name = name.strip()
        if not name:
            raise CommandError("NAME must not be empty")
        api_key, raw_key = ApiKey.issue(name=name, scope=scope)
        self.stderr.write(f"Created {scope} key #{api_key.pk} “{name}”. Store it now: it is not shown again.")
        self.stdout.write(raw_key)
