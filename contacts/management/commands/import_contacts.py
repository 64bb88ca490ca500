"""``manage.py import_contacts FILE``: the CSV import without the browser (same validation, same report)."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from contacts.csvio import MAX_FILE_BYTES, contacts_import_run, decode_upload, guess_mapping, read_header_and_preview
from contacts.models import ContactImport


class Command(BaseCommand):
    help = "Import contacts from a CSV file (columns: " \
           "email, first_name, last_name, phone, country, city, birth_date, consent_email, tags)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--errors", type=Path, help="Write the row-error report (row, column, problem) here.")

    def handle(self, *args, file: Path, errors: Path | None = None, **options) -> None:
        if not file.is_file():
            raise CommandError(f"{file} is not a file.")
        if file.stat().st_size > MAX_FILE_BYTES * 10:
            raise CommandError(f"{file} is larger than {MAX_FILE_BYTES * 10 // 1024 // 1024} MB: split it.")
        try:
            text = decode_upload(file.read_bytes())
            header, _ = read_header_and_preview(text)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        mapping = guess_mapping(header)
        if "email" not in mapping:
            raise CommandError(f"No email column among {header}.")
        contact_import = ContactImport.objects.create(filename=file.name[:255], content=text, header=header,
                                                      mapping=mapping, status=ContactImport.Status.QUEUED)
        result = contacts_import_run(contact_import)
        contact_import.refresh_from_db()
        if errors is not None:
            with errors.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["row", "column", "problem"])
                writer.writerows(contact_import.errors)
        for row, column, problem in contact_import.errors[:20]:
            self.stderr.write(f"row {row}, {column}: {problem}")
        self.stdout.write(f"{result['rows']} rows: {result['imported']} imported, {result['errors']} with errors.")
