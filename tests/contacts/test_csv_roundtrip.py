"""CSV export → import is the identity: formula guard, quoting, tags and the BOM undo exactly."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.csvio import (
    BOM,
    EXPORT_HEADER,
    FORMULA_PREFIXES,
    contacts_export_rows,
    contacts_import_run,
    csv_lines,
    csv_safe,
    csv_unguard,
    decode_upload,
    guess_mapping,
    parse_tags,
    read_header_and_preview,
    sniff_reader,
    tags_format,
)
from contacts.models import Contact, ContactImport, ContactTag, Tag, TagScoreChange, tag_key
from contacts.scoring import tag_scores_set, tags_ensure
from contacts.services import clean_text, contacts_upsert
from tests.contacts.exports import export_csv
from tests.factories import ContactFactory, give_tag

# Separators of both kinds, quotes, line breaks, formula starters, Polish letters, digits.
ALPHABET = ";:,|\"' \n\r\t=+-@().ąęłóśżźćńĄŁŻŚaAbzZ019"
TRICKY = ["+48 763 901 750", "-5", "-12.5", "+1-555-0100", "Jan;=1+1", "=2+3", "'=1", "@SUM(A1)", "Kraków",
          "a;b", "x:y", 'say "hi"', "-12,5", "=HYPERLINK(\"http://evil\")"]
texts = st.one_of(st.text(ALPHABET, max_size=30), st.sampled_from(TRICKY))
NUMBER_OR_PHONE = re.compile(r"[+-]?[0-9 ().-]*[0-9][0-9 ().-]*")


def _export_bytes(queryset) -> bytes:
    """The file the export views stream (same generators, same encoding)."""
    return "".join(csv_lines(contacts_export_rows(queryset))).encode("utf-8")


def _import_bytes(raw: bytes) -> ContactImport:
    """The upload path: decode, read the header, guess the mapping, run the import."""
    text = decode_upload(raw)
    header, _ = read_header_and_preview(text)
    contact_import = ContactImport.objects.create(filename="f.csv", content=text, header=header,
                                                  mapping=guess_mapping(header))
    contacts_import_run(contact_import)
    contact_import.refresh_from_db()
    return contact_import


def _snapshot() -> dict:
    """Every importable exported column of every contact, tags as {name: score}."""
    tags: dict[int, dict[str, int]] = {}
    for contact_id, name, score in ContactTag.objects.values_list("contact_id", "tag__name", "score"):
        tags.setdefault(contact_id, {})[name] = score
    return {
        row[1]: (*row[2:], tags.get(row[0], {}))
        for row in Contact.objects.values_list("id", "email", "first_name", "last_name", "phone", "country",
                                               "city", "birth_date")
    }


contact_values = st.fixed_dictionaries({
    "first_name": texts, "last_name": texts, "phone": st.one_of(texts, st.sampled_from(TRICKY[:4])),
    "city": texts, "country": st.sampled_from(["", "PL", "DE"]),
    "birth_date": st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31))),
    "tags": st.dictionaries(texts, st.integers(1, 1_000_000), max_size=4),
})


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(contact_values, min_size=1, max_size=4))
def test_export_then_import_is_the_identity(contacts):
    with transaction.atomic():
        # given contacts stored the way the app stores them, with tricky names, phones, cities and tags
        items, tag_rows = [], []
        for number, values in enumerate(contacts):
            item = {"email": f"c{number}@example.com", "country": values["country"],
                    "birth_date": values["birth_date"], "properties": {}, "consents": {}}
            for name in ("first_name", "last_name", "phone", "city"):
                item[name] = clean_text(values[name], name)[: {"phone": 40}.get(name, 100)].strip()
            items.append(item)
            seen = set()
            for tag_name, score in values["tags"].items():
                if tag_key(tag_name) and tag_key(tag_name) not in seen and len(tag_key(tag_name)) <= 100:
                    seen.add(tag_key(tag_name))
                    tag_rows.append((number, tag_name, score))
        results = contacts_upsert(items, source="import")
        with connection.cursor() as cursor:
            tag_ids = tags_ensure(cursor, [name for _, name, _ in tag_rows])
            tag_scores_set(cursor, contact_ids=[results[number].contact_id for number, _, _ in tag_rows],
                           tag_ids=[tag_ids[name] for _, name, _ in tag_rows],
                           scores=[score for _, _, score in tag_rows], source=TagScoreChange.Source.IMPORT)
        before = _snapshot()
        # when they are exported, deleted, and the file imported again
        raw = _export_bytes(Contact.objects.order_by("email"))
        Contact.objects.all().delete()
        Tag.objects.all().delete()
        result = _import_bytes(raw)
        # then every row imports and every value is back as it was
        assert (result.errors, result.imported_rows) == ([], len(contacts))
        assert _snapshot() == before
        transaction.set_rollback(True)


@given(st.lists(st.lists(texts, min_size=len(EXPORT_HEADER), max_size=len(EXPORT_HEADER)), max_size=4))
@settings(max_examples=200)
def test_every_exported_cell_reads_back_exactly(rows):
    # when rows under the export header are written and read back the way the import reads them
    raw = "".join(csv_lines([EXPORT_HEADER, *rows])).encode("utf-8")
    read = list(sniff_reader(decode_upload(raw)))
    # then every cell of every column is what was exported (score, owner and dates included)
    assert [[csv_unguard(cell) for cell in row] for row in read] == [EXPORT_HEADER, *rows]


@given(st.text(max_size=40))
@settings(max_examples=500)
def test_the_guard_leaves_no_formula_at_any_cell_start_and_is_undone_exactly(text):
    # when any text is made safe
    safe = csv_safe(text)
    # then wherever a spreadsheet could start a cell, a formula start is a number or phone number
    for start in [0, *(match.end() for match in re.finditer(r"[,;\"\t\r\n]", safe))]:
        piece = re.split(r"[,;\"\t\r\n]", safe[start:], maxsplit=1)[0] if start else safe
        if safe[start:].startswith(FORMULA_PREFIXES):
            assert NUMBER_OR_PHONE.fullmatch(piece)
    # and the import's unguard gives back the original text
    assert csv_unguard(safe) == text


@pytest.mark.parametrize("number", ["+48 763 901 750", "-5", "-12.5", "+1-555-0100", "(22) 123-45-67", "0"])
def test_numbers_and_phone_numbers_are_not_guarded(number):
    assert csv_safe(number) == number


@given(st.lists(st.tuples(st.text(ALPHABET, min_size=1, max_size=20), st.integers(1, 1_000_000)), max_size=5))
def test_tags_format_reads_back_exactly(pairs):
    # given tag names as the app stores them (trimmed, whitespace collapsed, unique)
    names: dict[str, int] = {}
    for name, score in pairs:
        normalized = " ".join(name.split())
        if normalized and normalized.lower() not in {key.lower() for key in names}:
            names[normalized] = score
    # when they are formatted and parsed
    # then the same names and scores come back, in order
    assert parse_tags(tags_format(names.items())) == list(names.items())


@pytest.mark.parametrize(("cell", "expected"), [
    ("kurtki:3;buty:2", [("kurtki", 3), ("buty", 2)]),
    ("kurtki:3|buty:2", [("kurtki", 3), ("buty", 2)]),
    ("kurtki:4;Sukienki:1;vip", [("kurtki", 4), ("Sukienki", 1), ("vip", 1)]),
    ('"a;b":2; "x""y" : 3|"vip"', [("a;b", 2), ('x"y', 3), ("vip", 1)]),
    ("a:b:5", [("a:b", 5)]),
])
def test_hand_typed_and_quoted_tag_cells_parse(cell, expected):
    assert parse_tags(cell) == expected


@pytest.mark.parametrize("cell", ['"kurtki', '"kurtki"x:2', "kurtki:x"])
def test_malformed_tag_cells_are_refused(cell):
    with pytest.raises(ValueError):
        parse_tags(cell)


def _raw_cells(body: str) -> list[str]:
    """Every cell the file could split into: on ';' or on ',', line by line, ignoring quoting."""
    return [cell for delimiter in ";," for line in body.splitlines() for cell in line.split(delimiter)]


@pytest.mark.django_db
def test_a_formula_never_opens_a_cell_whichever_separator_the_spreadsheet_uses(marketer_client):
    # given a first name and a tag that start a formula after a separator or at the start
    contact = ContactFactory(email="jan@example.com", first_name="Jan;=1+1", city="Kraków")
    give_tag(contact, "=2+3", 2)
    give_tag(contact, "a;=b", 1)
    # when the list is exported through the list's button and its job
    raw = export_csv(marketer_client)
    # then the file starts with a UTF-8 BOM and holds Kraków in UTF-8
    assert raw.startswith(BOM.encode("utf-8")) and "Kraków".encode() in raw
    # and no cell, split on ';' or ',', starts with '=' (nor right after a quote)
    cells = _raw_cells(raw.decode("utf-8-sig"))
    assert not [cell for cell in cells if cell.lstrip('"').startswith("=")]
    # (the guard's apostrophes sit where those cells would open, the quoting holds the separators)
    assert "\"Jan;'=1+1\"," in raw.decode() and "\"'=2+3:2;\"\"a;'=b\"\":1\"" in raw.decode()
    # and the import reads back the name and both tags
    Contact.objects.all().delete()
    Tag.objects.all().delete()
    assert _import_bytes(raw).errors == []
    imported = Contact.objects.get(email="jan@example.com")
    assert imported.first_name == "Jan;=1+1"
    assert dict(ContactTag.objects.filter(contact=imported).values_list("tag__name", "score")) == {"=2+3": 2,
                                                                                                    "a;=b": 1}


@pytest.mark.django_db
def test_a_phone_number_round_trips_unguarded(marketer_client):
    ContactFactory(email="ola@example.com", phone="+48 763 901 750")
    raw = export_csv(marketer_client)
    # the cell is written as is (no apostrophe), and imports back unchanged
    assert b",+48 763 901 750," in raw
    Contact.objects.all().delete()
    _import_bytes(raw)
    assert Contact.objects.get(email="ola@example.com").phone == "+48 763 901 750"


@pytest.mark.django_db
def test_a_segment_export_is_guarded_the_same_way(marketer_client):
    from segments.services import segment_refresh
    from tests.segments.exports import segment_export_csv
    from tests.segments.factories import make_segment

    contact = ContactFactory(email="jan@example.com", first_name="Jan;=1+1")
    give_tag(contact, "kurtki", 5)
    segment = make_segment({"type": "has_tag", "tag": "kurtki"})
    segment_refresh(segment.pk)
    raw = segment_export_csv(marketer_client, segment)
    assert raw.startswith(BOM.encode("utf-8"))
    cells = _raw_cells(raw.decode("utf-8-sig"))
    assert "jan@example.com" in cells and not [cell for cell in cells if cell.lstrip('"').startswith("=")]


@pytest.mark.django_db
@pytest.mark.parametrize("tags_cell", ['"kurtki:3;buty:2"', "kurtki:3;buty:2", '"kurtki:3|buty:2"'])
def test_a_semicolon_file_with_a_multi_tag_cell_imports_every_tag(tags_cell):
    # given a file from Polish Excel: ';' between cells, a BOM, Windows line ends
    raw = (BOM + f"E-mail;Imię;Miasto;Tagi\r\nanna@example.com;Anna;Kraków;{tags_cell}\r\n").encode("utf-8")
    # when it is imported
    result = _import_bytes(raw)
    # then the row and both of its tags are in
    assert (result.imported_rows, result.errors) == (1, [])
    anna = Contact.objects.get(email="anna@example.com")
    assert (anna.first_name, anna.city) == ("Anna", "Kraków")
    assert dict(ContactTag.objects.filter(contact=anna).values_list("tag__name", "score")) == {"kurtki": 3, "buty": 2}
