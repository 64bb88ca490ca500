"""CSV in and out: formula-safe export, and the import (validate rows, upsert set-based per chunk).

The export is written for spreadsheets set to either list separator (``,`` or, in Poland and
Germany, ``;``) and the import undoes exactly what the export does, so export → import keeps every
value:

- The file starts with a UTF-8 BOM (Excel otherwise reads it as the ANSI code page: ``Kraków``
  garbled). The import ignores a BOM.
- A cell holding ``,`` ``;`` a quote, a tab or a line break is quoted (RFC 4180, quotes doubled),
  whatever the delimiter, so a reader splitting on either separator keeps it whole.
- Formula guard (OWASP "CSV injection"): a spreadsheet may start a cell at the start of the value
  or after any of ``, ; " tab CR LF`` inside it (a ``;`` spreadsheet opening the ``,`` file splits
  the text where we did not). At each such cell start, text that begins with a formula character
  (``= + - @`` tab CR), possibly after apostrophes, gets one more apostrophe in front. Exception:
  a number or phone number is not a formula — text made of digits, spaces, dashes, dots and
  parentheses with an optional leading ``+`` or ``-`` and at least one digit (``-5``, ``-12.5``,
  ``+48 763 901 750``, ``+1-555-0100``) is left as it is: without letters, quotes or ``!|:$`` it
  cannot call a function or reference anything, so at worst a spreadsheet shows it as arithmetic.
  At the start of the value the whole value must have that form; after a separator, the text up to
  the next separator. The import removes one apostrophe wherever apostrophes followed by a formula
  character open a cell start, which inverts the guard exactly (a value that itself begins with
  ``'=`` is exported as ``''=``).
- Tags are ``name:score`` joined by ``;``, strongest first; a name holding ``;`` ``|`` ``:`` or a
  quote is written in double quotes with inner quotes doubled (``"a;b":2``). The import reads that,
  and what people type by hand: ``kurtki:3;buty:2``, ``kurtki:3|buty:2``, ``vip`` (score 1).
- The import detects the delimiter from the header line (``,`` ``;`` or tab, whichever appears most;
  ``,`` on a tie). In a file whose tags column is the last one, an unquoted tags cell split by the
  delimiter (``kurtki:3;buty:2`` in a ``;`` file) is joined back instead of losing its tail.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.contrib.postgres.aggregates import JSONBAgg
from django.db import connection, transaction
from django.db.models import F, Func, JSONField, OuterRef, QuerySet, Subquery
from django.utils.formats import number_format
from django.utils.translation import gettext as _

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
from contacts.signals import TAG_CHANGES, contacts_changed_send

BOM = "\ufeff"
# Spreadsheets run a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# After one of these a spreadsheet may start a new cell (a separator of either kind, a quote, a line
# break, a tab), so the guard checks the text after each of them too.
_CELL_BREAK = re.compile(r"[,;\"\t\r\n]")
_FORMULA_AT = re.compile(r"'*[=+\-@\t\r]")
_GUARDED_AT = re.compile(r"'+[=+\-@\t\r]")
# A number or phone number: harmless however a spreadsheet reads it (see the module docstring).
_NUMBER_OR_PHONE = re.compile(r"[+-]?[0-9 ().-]*[0-9][0-9 ().-]*")
_NEEDS_QUOTES = re.compile(r"[,;\"\t\r\n]")


def _cell_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in _CELL_BREAK.finditer(text))]


def _starts_a_formula(text: str, start: int) -> bool:
    if not _FORMULA_AT.match(text, start):
        return False
    if start == 0:
        piece = text
    else:
        following_break = _CELL_BREAK.search(text, start)
        piece = text[start:following_break.start() if following_break else len(text)]
    return not _NUMBER_OR_PHONE.fullmatch(piece)


def csv_safe(value) -> str:
    """A cell value a spreadsheet shows as text: an apostrophe before every formula-like cell start
    (at the start and after each separator, quote or line break; numbers and phone numbers
    excepted). ``csv_unguard`` inverts it."""
    if value is None:
        return ""
    text = str(value)
    if not _CELL_BREAK.search(text):  # the usual cell: one cell start
        return "'" + text if _starts_a_formula(text, 0) else text
    starts = [start for start in _cell_starts(text) if _starts_a_formula(text, start)]
    if not starts:
        return text
    parts, last = [], 0
    for start in starts:
        parts.append(text[last:start])
        parts.append("'")
        last = start
    parts.append(text[last:])
    return "".join(parts)


def csv_unguard(text: str) -> str:
    """The value ``csv_safe`` was given: one apostrophe removed wherever apostrophes followed by a
    formula character open a cell start."""
    if "'" not in text:
        return text
    drop = {start for start in _cell_starts(text) if _GUARDED_AT.match(text, start)}
    if not drop:
        return text
    return "".join(char for index, char in enumerate(text) if index not in drop)


def _csv_cell(value) -> str:
    text = csv_safe(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(row: Iterable) -> str:
    """One row as a CSV line: ``,`` between cells, every cell through ``csv_safe`` and quoted when
    it holds either separator, a quote, a tab or a line break; CRLF at the end."""
    cells = [_csv_cell(cell) for cell in row]
    if cells == [""]:
        cells = ['""']  # a lone empty cell, else the line would read as no cells at all
    return ",".join(cells) + "\r\n"


def csv_lines(rows: Iterable[Iterable]) -> Iterator[str]:
    """Encode rows as CSV lines (for a StreamingHttpResponse): a UTF-8 BOM first, then ``csv_line``
    of each row."""
    yield BOM
    for row in rows:
        yield csv_line(row)


EXPORT_HEADER = ["email", "first_name", "last_name", "phone", "country", "city", "birth_date", "score",
                 "owner", "created_at", "last_activity_at", "tags"]


def contacts_export_values(queryset: QuerySet) -> QuerySet:
    """The export's columns of the queryset's contacts, each row led by the contact's id, its tags
    one JSON array per contact (``[["kurtki", 4], …]``, strongest first): one query."""
    pair = Func(F("tag__name"), F("score"), function="jsonb_build_array", output_field=JSONField())
    tags = (
        ContactTag.objects.filter(contact=OuterRef("pk"))
        .values("contact")
        .annotate(pairs=JSONBAgg(pair, order_by=("-score", "tag__name")))
        .values("pairs")
    )
    return queryset.annotate(tag_pairs=Subquery(tags, output_field=JSONField())).values_list(
        "id", "email", "first_name", "last_name", "phone", "country", "city", "birth_date", "score",
        "owner__username", "created_at", "last_activity_at", "tag_pairs",
    )


def contacts_export_row(values: tuple) -> list:
    """A row of ``contacts_export_values`` as the cells under EXPORT_HEADER (the id dropped)."""
    _contact_id, *cells, pairs = values
    return [*(value.isoformat() if hasattr(value, "isoformat") else value for value in cells),
            tags_format(pairs or [])]


def contacts_export_rows(queryset: QuerySet) -> Iterator[list]:
    """Header + one row per contact, streamed from a server-side cursor in chunks (never all loaded).
    Tags are ``name:score;…`` strongest first (``tags_format``), the import format, so an export
    re-imports as is."""
    yield EXPORT_HEADER
    for values in contacts_export_values(queryset).iterator(chunk_size=2000):
        yield contacts_export_row(values)


EXPORT_HEAD = (BOM + csv_line(EXPORT_HEADER)).encode("utf-8")


def contacts_export_chunk(queryset: QuerySet, *, after_id: int | None, size: int) -> tuple[bytes, int, int] | None:
    """The CSV lines of the next ``size`` contacts of the queryset after ``after_id``, in id order
    (one query, keyset on the primary key): (UTF-8 bytes, the last contact's id, rows), or None
    when none are left. ``EXPORT_HEAD`` and the chunks joined are the bytes ``csv_lines`` of
    ``contacts_export_rows`` gives for the queryset in id order."""
    rows = list(
        queryset.filter(pk__gt=after_id or 0).order_by("pk").values_list(
            "id", "email", "first_name", "last_name", "phone", "country", "city", "birth_date", "score",
            "owner__username", "created_at", "last_activity_at",
        )[:size]
    )
    if not rows:
        return None
    # The chunk's tags in one range scan of the (contact, tag) key, not one subquery per contact
    # (a tenth of the time at a million contacts).
    ids = {values[0] for values in rows}
    pairs: dict[int, list] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT ct.contact_id, t.name, ct.score FROM contacts_contacttag ct JOIN contacts_tag t ON t.id = ct.tag_id
            WHERE ct.contact_id BETWEEN %s AND %s ORDER BY ct.contact_id, ct.score DESC, t.name
            """,
            [rows[0][0], rows[-1][0]],
        )
        for contact_id, name, score in cursor.fetchall():
            if contact_id in ids:
                pairs.setdefault(contact_id, []).append((name, score))
    text = "".join(csv_line(contacts_export_row((*values, pairs.get(values[0])))) for values in rows)
    return text.encode("utf-8"), rows[-1][0], len(rows)


_TAG_NAME_NEEDS_QUOTES = re.compile(r"[;|:\"\r\n]|^\s|\s$")


def tags_format(pairs: Iterable) -> str:
    """[("kurtki", 3), ("a;b", 2)] → ``kurtki:3;"a;b":2`` (``parse_tags`` reads it back)."""
    cells = []
    for name, score in pairs:
        if _TAG_NAME_NEEDS_QUOTES.search(name):
            name = '"' + name.replace('"', '""') + '"'
        cells.append(f"{name}:{score}")
    return ";".join(cells)


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
    raise ValueError(_("The file is neither UTF-8 nor Windows-1250 text."))


def sniff_reader(text: str) -> csv.reader:
    """A reader for the file's delimiter: whichever of , ; tab appears most in the header line
    (the header rarely quotes, so this beats sniffing rows whose tag cells hold ';'); a BOM at the
    start is ignored."""
    text = text.removeprefix(BOM)
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def read_header_and_preview(text: str, preview_rows: int = 5) -> tuple[list[str], list[list[str]]]:
    reader = sniff_reader(text)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise ValueError(_("The file has no header row."))
    preview = []
    for row in reader:
        preview.append([csv_unguard(cell) for cell in row])  # as the import will read them
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
    """``kurtki:4;"a;b":2|vip`` → [("kurtki", 4), ("a;b", 2), ("vip", 1)].

    Items are separated by ``;`` or ``|``; a name is either quoted (``"…"``, inner quotes doubled,
    any character allowed) or everything up to the item's last ``:``; no ``:score`` means 1."""
    tags = []
    position, length = 0, len(value)
    while position < length:
        while position < length and value[position].isspace():
            position += 1
        if position < length and value[position] == '"':
            name, position = _quoted_tag_name(value, position)
            end = _tag_item_end(value, position)
            rest = value[position:end].strip()
            if not rest:
                score_text = "1"
            elif rest.startswith(":"):
                score_text = rest[1:]
            else:
                raise ValueError(_("After the quoted tag name %(name)r write ':' and a score, not %(rest)r.")
                                 % {"name": name, "rest": rest})
        else:
            end = _tag_item_end(value, position)
            part = value[position:end]
            if not part.strip():
                position = end + 1
                continue
            name, separator, score_text = part.rpartition(":")
            if not separator:
                name, score_text = part, "1"
        name = clean_tag_name(name)
        score_text = score_text.strip()
        if not score_text.isdigit() or not 1 <= int(score_text) <= MAX_TAG_SCORE_STEP:
            raise ValueError(_("Score of tag %(name)r must be a whole number from 1 to %(max)s, got %(value)r.")
                             % {"name": name, "max": number_format(MAX_TAG_SCORE_STEP, force_grouping=True),
                                "value": score_text})
        tags.append((name, int(score_text)))
        position = end + 1
    return tags


def _tag_item_end(value: str, position: int) -> int:
    """Index of the next item separator (``;`` or ``|``) at or after ``position``, else the end."""
    ends = [index for index in (value.find(";", position), value.find("|", position)) if index >= 0]
    return min(ends) if ends else len(value)


def _quoted_tag_name(value: str, position: int) -> tuple[str, int]:
    """The quoted name opening at ``position`` and the index after its closing quote."""
    chars = []
    index = position + 1
    while index < len(value):
        if value[index] == '"':
            if value[index + 1:index + 2] == '"':
                chars.append('"')
                index += 2
                continue
            return "".join(chars), index + 1
        chars.append(value[index])
        index += 1
    raise ValueError(_("A quoted tag name is not closed: %(value)r.") % {"value": value[position:]})


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
        return csv_unguard(row[index].strip()) if index < len(row) else ""

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
            errors.append([number, column_name("consent_email"),
                           _("Use yes/no (or true/false, 1/0), not %(value)r.") % {"value": consent}])
    tags: list[tuple[str, int]] = []
    if cell("tags"):
        try:
            tags = parse_tags(cell("tags"))
        except ValueError as exc:
            errors.append([number, column_name("tags"), str(exc)])
    if errors:
        return None, errors
    return ParsedRow(number, item, tags), []


def _rejoin_split_tags(row: list[str], header: list[str], tags_index: int | None) -> list[str]:
    """A row whose unquoted last cell, the tags, was split by the file's delimiter
    (``a@x.pl;kurtki:3;buty:2`` under the header ``email;tags``): the tags cell joined back (``;``
    separates tags whatever the delimiter was), so no tag is silently dropped."""
    width = len(header)
    if tags_index != width - 1 or len(row) <= width:
        return row
    tail = row[tags_index:]
    while len(tail) > 1 and not tail[-1].strip():
        tail.pop()
    if len(tail) == 1:
        return [*row[:tags_index], tail[0]]
    return [*row[:tags_index], ";".join(tail)]


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
        row = _rejoin_split_tags(row, header, mapping.get("tags"))
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
            chunk.errors.append([row.number, "email", _("This email was erased (GDPR); import it with "
                                                        "consent_email=yes to re-create it.")])
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
                changed = tag_scores_set(cursor, contact_ids=contact_ids, tag_ids=[tag_ids[name] for name in tag_names],
                                         scores=scores, source=TagScoreChange.Source.IMPORT,
                                         user_id=getattr(user, "pk", None))
            # tiers follow the new tag scores now, memberships through their queue
            contacts_changed_send(changed, deferred=True, sender=contacts_import_write, changes=TAG_CHANGES)
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
