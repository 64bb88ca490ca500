"""The Polish catalogues of the project, read with polib (shared by the catalogue and walk tests)."""

from __future__ import annotations

import re
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parent.parent.parent
# Placeholders a translation must keep: %(name)s / %(count)d, bare %s / %d, and {name} (str.format).
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\{\w*\}")


def po_paths() -> list[Path]:
    """Every ``locale/pl/LC_MESSAGES/*.po`` in the repository (the root's and each app's)."""
    found = list(ROOT.glob("locale/pl/LC_MESSAGES/*.po")) + list(ROOT.glob("*/locale/pl/LC_MESSAGES/*.po"))
    return sorted(path for path in found if ".venv" not in path.parts and "node_modules" not in path.parts)


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text.replace("%%", "")))


def translated_msgids() -> set[str]:
    """English msgids (singular and plural) whose Polish text differs: seeing one of these on a
    Polish page means a marked string was not translated at run time. A msgid that is also Polish
    somewhere ("Import", "Segment": the same word in both languages) is left out."""
    msgids: set[str] = set()
    polish: set[str] = set()
    for path in po_paths():
        for entry in polib.pofile(str(path)):
            if entry.obsolete or "fuzzy" in entry.flags:
                continue
            polish.update([entry.msgstr, *entry.msgstr_plural.values()])
            if entry.msgid_plural:
                if any(text and text != entry.msgid_plural for text in entry.msgstr_plural.values()):
                    msgids.update((entry.msgid, entry.msgid_plural))
            elif entry.msgstr and entry.msgstr != entry.msgid:
                msgids.add(entry.msgid)
    return msgids - polish
