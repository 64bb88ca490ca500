"""Every Polish catalogue is complete and its committed .mo says what its .po says."""

from __future__ import annotations

import polib
import pytest

from tests.i18n.catalogues import ROOT, placeholders, po_paths

PATHS = po_paths()
IDS = [str(path.relative_to(ROOT)) for path in PATHS]


def test_the_shell_catalogues_exist():
    # given the shell's own catalogues (the areas add theirs beside them)
    names = set(IDS)
    # then the root templates, core and marketing_hub have one each
    assert {"locale/pl/LC_MESSAGES/django.po", "core/locale/pl/LC_MESSAGES/django.po",
            "marketing_hub/locale/pl/LC_MESSAGES/django.po"} <= names


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_catalogue_is_complete(path):
    # given a Polish catalogue
    catalogue = polib.pofile(str(path))
    problems = []
    # then it declares Polish's three plural forms
    plural_forms = catalogue.metadata.get("Plural-Forms", "")
    if "nplurals=3;" not in plural_forms.replace(" ", ""):
        problems.append(f"Plural-Forms must have nplurals=3, got {plural_forms!r}")
    # and every entry is translated, not fuzzy, with the msgid's placeholders
    for entry in catalogue:
        if entry.obsolete:
            continue
        name = f"{entry.msgctxt + ' | ' if entry.msgctxt else ''}{entry.msgid!r}"
        if "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {name}")
        if entry.msgid_plural:
            forms = [entry.msgstr_plural.get(index, "") for index in range(3)]
            if len(entry.msgstr_plural) != 3 or not all(forms):
                problems.append(f"needs three plural forms: {name}")
            allowed = set(placeholders(entry.msgid)) | set(placeholders(entry.msgid_plural))
            for index, form in enumerate(forms):
                found = placeholders(form)
                # form 0 (n == 1) may leave the number out ("jeden kontakt"); the others may not
                expected = placeholders(entry.msgid_plural)
                if not set(found) <= allowed or index > 0 and found != expected:
                    problems.append(f"placeholders of msgstr[{index}] {found} ≠ {expected}: {name}")
        else:
            if not entry.msgstr:
                problems.append(f"not translated: {name}")
            elif placeholders(entry.msgstr) != placeholders(entry.msgid):
                problems.append(f"placeholders {placeholders(entry.msgstr)} ≠ {placeholders(entry.msgid)}: {name}")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def _messages(catalogue) -> dict:
    """(context, msgid) → the translation(s), as gettext will look them up."""
    messages = {}
    for entry in catalogue:
        if entry.obsolete or "fuzzy" in entry.flags or not entry.msgid:
            continue
        key = (entry.msgctxt or "", entry.msgid)
        if entry.msgid_plural:
            messages[key] = (entry.msgid_plural, tuple(entry.msgstr_plural[index] for index in sorted(entry.msgstr_plural)))
        elif entry.msgstr:
            messages[key] = entry.msgstr
    return messages


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_compiled_catalogue_matches_its_source(path):
    # given a .po and the .mo committed beside it
    compiled = path.with_suffix(".mo")
    assert compiled.exists(), f"{compiled.relative_to(ROOT)} is missing: run `make messages`"
    # when both are read as catalogues (not compared byte for byte: tools lay files out differently)
    source, binary = _messages(polib.pofile(str(path))), _messages(polib.mofile(str(compiled)))
    # then they hold the same messages
    stale = sorted(key for key in source if binary.get(key) != source[key])
    extra = sorted(key for key in binary if key not in source)
    assert not stale and not extra, (
        f"{compiled.relative_to(ROOT)} is out of date (run `make messages`): "
        f"differs for {stale[:5]}{' …' if len(stale) > 5 else ''}, not in the .po: {extra[:5]}"
    )
