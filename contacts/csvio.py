"""CSV in and out: formula-safe export, and the import (validate rows, upsert set-based per chunk)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.contrib.postgres.aggregates import StringAgg
from django.db import connection, transaction
from django.db.models import OuterRef, QuerySet, Subquery

from contacts.models import ContactImport, ContactTag, TagScoreChange
from contacts.scoring import tag_scores_set, tags_ensure
from contacts.services import (
    MAX_TAG_SCORE_STEP,
    clean_birth_date,
    clean_country,
    clean_email,
    clean_tag_name,
    clean_text,
    contacts_upsert,
    suppressed_emails,
)

# Spreadsheets run a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell value a spreadsheet shows as text: formula-like strings get a leading apostrophe."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable]) -> Iterator[str]:
    """Encode rows as CSV lines, every cell through ``csv_safe`` (for a StreamingHttpResponse)."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([csv_safe(cell) for cell in row])


EXPORT_HEADER = ["email", "first_name", "last_name", "phone", "country", "city", "birth_date", "score",
                 "owner", "created_at", "last_activity_at", "tags"]


def contacts_export_rows(queryset: QuerySet) -> Iterator[list]:
    """Header + one row per contact, streamed from a server-side cursor in chunks (never all loaded).
    Tags are ``name:score;…`` strongest first, the import format, so an export re-imports as is."""
    tags = (
        ContactTag.objects.filter(contact=OuterRef("pk"))
        .values("contact")
        .annotate(joined=StringAgg(
            _tag_pair(), delimiter=";", order_by=("-score", "tag__name")))
        .values("joined")
    )
    rows = queryset.annotate(tag_list=Subquery(tags)).values_list(
        "email", "first_name", "last_name", "phone", "country", "city", "birth_date", "score",
        "owner__username", "created_at", "last_activity_at", "tag_list",
    )
    yield EXPORT_HEADER
    for row in rows.iterator(chunk_size=2000):
        yield [value.isoformat() if hasattr(value, "isoformat") else value for value in row]


def _tag_pair():
    from django.db.models import CharField, Value
    from django.db.models.functions import Cast, Concat

    return Concat("tag__name", Value(":"), Cast("score", CharField()), output_field=CharField())


# --- import -------------------------------------------------------------------------------------
IMPORT_FIELDS = ["email", "first_name", "last_name", "phone", "country", "city", "birth_date", "consent_email",
                 "tags"]
FIELD_ALIASES = {
    "email": {"email", "e-mail", "mail", "email address", "adres email"},
    "first_name": {"first_name", "first name", "firstname", "given name", "imie", "imię"},
    "last_name": {"last_name", "last name", "lastname", "surname", "family name", "nazwisko"},
    "phone": {"phone", "phone number", "telephone", "mobile", "telefon"},
    "country": {"country", "country code", "kraj"},
    "city": {"city", "town", "miasto"},
    "birth_date": {"birth_date", "birth date", "birthday", "date of birth", "dob", "data urodzenia"},
    "consent_email": {"consent_email", "email consent", "consent", "newsletter", "zgoda"},
    "tags": {"tags", "tag", "tagi"},
}
TRUE_WORDS = {"1", "true", "yes", "y", "tak", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "nie", "f"}
MAX_REPORTED_ERRORS = 10_000
CHUNK_ROWS = 1000
MAX_FILE_BYTES = 10 * 1024 * 1024


def decode_upload(raw: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), else Windows-1250, the usual Polish export."""
    for encoding in ("utf-8-sig", "cp1250"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError("The file is neither UTF-8 nor Windows-1250 text.")


def sniff_reader(text: str) -> csv.reader:
    """A reader for the file's delimiter: whichever of , ; tab appears most in the header line
    (the header rarely quotes, so this beats sniffing rows whose tag cells hold ';')."""
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    return csv.reader(io.StringIO(text), delimiter=delimiter)


def read_header_and_preview(text: str, preview_rows: int = 5) -> tuple[list[str], list[list[str]]]:
    reader = sniff_reader(text)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise ValueError("The file has no header row.")
    preview = []
    for row in reader:
        preview.append(row)
        if len(preview) >= preview_rows:
            break
    return [cell.strip() for cell in header], preview


def guess_mapping(header: list[str]) -> dict[str, int]:
    """target field → column index, matching header names and common aliases case-insensitively."""
    mapping: dict[str, int] = {}
    for index, name in enumerate(header):
        normalized = name.strip().lower().replace("-", " ").replace("_", " ")
        for target, aliases in FIELD_ALIASES.items():
            if target in mapping:
                continue
            if normalized in {alias.replace("_", " ").replace("-", " ") for alias in aliases}:
                mapping[target] = index
                break
    return mapping


def parse_tags(value: str) -> list[tuple[str, int]]:
    """``"kurtki:4;Sukienki:1;vip"`` → [("kurtki", 4), ("Sukienki", 1), ("vip", 1)]."""
    tags = []
    for part in value.split(";"):
        if not part.strip():
            continue
        name, separator, score_text = part.rpartition(":")
        if not separator:
            name, score_text = part, "1"
        name = clean_tag_name(name)
        score_text = score_text.strip()
        if not score_text.isdigit() or not 1 <= int(score_text) <= MAX_TAG_SCORE_STEP:
            raise ValueError(f"Score of tag {name!r} must be a whole number from 1 to {MAX_TAG_SCORE_STEP}, "
                             f"got {score_text!r}.")
        tags.append((name, int(score_text)))
    return tags


@dataclass
class ParsedRow:
    number: int
    item: dict
    tags: list[tuple[str, int]] = field(default_factory=list)


def parse_row(number: int, row: list[str], mapping: dict[str, int], header: list[str]
              ) -> tuple[ParsedRow | None, list[list]]:
    """Validate one data row. Returns the clean row or None with its errors [row, column, problem]."""
    errors: list[list] = []

    def cell(target: str) -> str | None:
        index = mapping.get(target)
        if index is None:
            return None
        return row[index].strip() if index < len(row) else ""

    def column_name(target: str) -> str:
        return header[mapping[target]] if mapping.get(target) is not None else target

    item: dict = {"properties": {}, "consents": {}}
    try:
        item["email"] = clean_email(cell("email") or "")
    except ValueError as exc:
        errors.append([number, column_name("email"), str(exc)])
    for target in ("first_name", "last_name", "phone", "city"):
        value = cell(target)
        if value:
            try:
                item[target] = clean_text(value, target)
            except ValueError as exc:
                errors.append([number, column_name(target), str(exc)])
    cleaners = {"country": clean_country, "birth_date": clean_birth_date}
    for target, cleaner in cleaners.items():
        value = cell(target)
        if value:
            try:
                item[target] = cleaner(value)
            except ValueError as exc:
                errors.append([number, column_name(target), str(exc)])
    consent = (cell("consent_email") or "").lower()
    if consent:
        if consent in TRUE_WORDS:
            item["consents"]["email"] = True
        elif consent in FALSE_WORDS:
            item["consents"]["email"] = False
        else:
            errors.append([number, column_name("consent_email"), f"Use yes/no (or true/false, 1/0), not {consent!r}."])
    tags: list[tuple[str, int]] = []
    if cell("tags"):
        try:
            tags = parse_tags(cell("tags"))
        except ValueError as exc:
            errors.append([number, column_name("tags"), str(exc)])
    if errors:
        return None, errors
    return ParsedRow(number, item, tags), []


@dataclass
class ImportChunk:
    """Up to CHUNK_ROWS data rows of the file: the valid ones parsed, the invalid ones' errors."""

    last_row: int  # the row number (as reported to the user) of the chunk's last row
    rows: int  # non-empty data rows read
    valid: list[ParsedRow]
    errors: list[list]  # [row, column, problem] of the invalid rows
    error_rows: int


def contacts_import_chunks(contact_import: ContactImport, *, after_row: int = 0,
                           size: int | None = None) -> Iterator[ImportChunk]:
    """The file's data rows after row ``after_row``, parsed, in chunks of ``size`` (CHUNK_ROWS) rows."""
    size = size or CHUNK_ROWS
    header = contact_import.header
    mapping = {target: int(index) for target, index in contact_import.mapping.items() if index is not None}
    reader = sniff_reader(contact_import.content)
    next(reader, None)
    chunk = ImportChunk(last_row=after_row, rows=0, valid=[], errors=[], error_rows=0)
    for number, row in enumerate(reader, start=2):
        if number <= after_row:
            continue
        chunk.last_row = number
        if not any(cell.strip() for cell in row):
            continue
        chunk.rows += 1
        parsed, row_errors = parse_row(number, row, mapping, header)
        if parsed is None:
            chunk.error_rows += 1
            chunk.errors.extend(row_errors)
        else:
            chunk.valid.append(parsed)
        if chunk.rows >= size:
            yield chunk
            chunk = ImportChunk(last_row=number, rows=0, valid=[], errors=[], error_rows=0)
    if chunk.rows or chunk.last_row > after_row:
        yield chunk


def contacts_import_write(chunk: ImportChunk, *, user=None) -> dict:
    """Upsert a chunk's valid rows and set their tag scores, set-based, in the caller's transaction
    (or one of its own). Rows of erased (GDPR) emails without a consent are refused. Returns
    {"rows", "imported", "errors"} and adds the refused rows to ``chunk.errors``."""
    blocked = suppressed_emails([row.item["email"] for row in chunk.valid])
    allowed = []
    for row in chunk.valid:
        if row.item["email"] in blocked and not row.item["consents"].get("email"):
            chunk.errors.append([row.number, "email", "This email was erased (GDPR); import it with "
                                                      "consent_email=yes to re-create it."])
            continue
        allowed.append(row)
    with transaction.atomic():
        results = contacts_upsert([row.item for row in allowed], source="import", user=user)
        contact_ids, tag_names, scores = [], [], []
        for row, result in zip(allowed, results, strict=True):
            for name, score in row.tags:
                contact_ids.append(result.contact_id)
                tag_names.append(name)
                scores.append(score)
        if contact_ids:
            with connection.cursor() as cursor:
                tag_ids = tags_ensure(cursor, tag_names)
                tag_scores_set(cursor, contact_ids=contact_ids, tag_ids=[tag_ids[name] for name in tag_names],
                               scores=scores, source=TagScoreChange.Source.IMPORT,
                               user_id=getattr(user, "pk", None))
    return {"rows": chunk.rows, "imported": len(allowed), "errors": chunk.rows - len(allowed)}


def contacts_import_finish(contact_import: ContactImport, counts: dict) -> dict:
    """Mark the import done with its totals; returns them as the job's result."""
    ContactImport.objects.filter(pk=contact_import.pk).update(
        status=ContactImport.Status.DONE, total_rows=counts.get("rows", 0),
        imported_rows=counts.get("imported", 0), error_rows=counts.get("errors", 0),
    )
    return {"rows": counts.get("rows", 0), "imported": counts.get("imported", 0), "errors": counts.get("errors", 0)}


def contacts_import_errors_add(contact_import: ContactImport, errors: list[list]) -> None:
    """Append to the import's error report, up to MAX_REPORTED_ERRORS entries (one UPDATE)."""
    if not errors:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE contacts_contactimport
            SET errors = errors || (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb)
                                    FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(e, n)
                                    WHERE n <= %s - jsonb_array_length(errors))
            WHERE id = %s
            """,
            [json.dumps(errors), MAX_REPORTED_ERRORS, contact_import.pk],
        )


def contacts_import_run(contact_import: ContactImport, progress=None, *, user=None) -> dict:
    """Import every valid row (set-based per chunk of CHUNK_ROWS, each chunk its own transaction),
    report the invalid ones. Idempotent: fields and tag scores are set, not added, so a re-import
    of the same file changes nothing. (The import job runs the same chunks on the resumable
    runner, ``contacts.tasks.contacts_import_task``.)"""
    ContactImport.objects.filter(pk=contact_import.pk).update(errors=[])
    counts = {"rows": 0, "imported": 0, "errors": 0}
    estimated_total = max(contact_import.content.count("\n"), 1)
    for chunk in contacts_import_chunks(contact_import):
        with transaction.atomic():
            written = contacts_import_write(chunk, user=user)
            contacts_import_errors_add(contact_import, chunk.errors)
        counts = {key: counts[key] + written[key] for key in counts}
        if progress is not None:
            progress.update(counts["rows"], estimated_total)
    if progress is not None:
        progress.update(counts["rows"], counts["rows"])
    return contacts_import_finish(contact_import, counts)
