"""The translation catalogues, made and compiled (``make messages``):

    python -m marketing_hub.catalogues            # the root catalogue and every app's
    python -m marketing_hub.catalogues contacts   # only these (the root one is ``.``)

Each area keeps its own catalogue, ``<app>/locale/pl/LC_MESSAGES/django.po``, with the strings of
its Python and templates; the root ``locale/`` (settings.LOCALE_PATHS) holds the shared templates/
at the root. Only apps that have a ``locale/`` folder get one (``mkdir <app>/locale`` to start).

Django's makemessages needs GNU gettext (xgettext, msgmerge); compiling does not: msgfmt when
present (it checks the formats too), else polib. The .mo files are committed, so a machine without
gettext serves the translations. Polish has three plural forms (1 kontakt, 2-4 kontakty, 5+
kontaktów); makemessages copies Django's own four-form header, which is set back to three here.

JavaScript (static/js) has no djangojs catalogue: its few visible strings come from the templates
in data attributes (the confirm dialog's buttons, "Copied"), translated with the page, so no
catalogue request is needed and CSP stays script-src 'self' without a JavaScriptCatalog view.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["pl"]
PLURAL_FORMS = {
    "pl": "nplurals=3; plural=(n==1 ? 0 : (n%10>=2 && n%10<=4) && (n%100<12 || n%100>=14) ? 1 : 2);",
}
# Never in a catalogue, should such a folder appear under templates/.
ROOT_IGNORES = ["node_modules", "vendor", "tests"]


def app_dirs() -> list[Path]:
    return sorted(path.parent for path in ROOT.glob("*/apps.py"))


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Settings would start the embedded PostgreSQL without a DATABASE_URL; makemessages never
    # connects, so any well-formed URL will do.
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/unused_by_makemessages")
    env["DJANGO_SETTINGS_MODULE"] = "marketing_hub.settings"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _makemessages(cwd: Path, ignores: list[str]) -> None:
    # -P: not the app folder first on sys.path (marketing_hub/celery.py would hide the celery package).
    command = [sys.executable, "-P", "-m", "django", "makemessages", "--no-obsolete", "--add-location=never",
               "--no-wrap", *(f"--locale={language}" for language in LANGUAGES),
               *(f"--ignore={pattern}" for pattern in ignores)]
    subprocess.run(command, cwd=cwd, env=_environment(), check=True)


def fix_header(po_path: Path, language: str) -> None:
    """Three plural forms, the language named, and no "fuzzy" on the header (a fresh catalogue's
    header is fuzzy, and msgfmt skips fuzzy entries)."""
    text = po_path.read_text(encoding="utf-8")
    head, _, body = text.partition('\nmsgid ""\nmsgstr ""\n')
    head = "\n".join(line for line in head.splitlines() if line.strip() != "#, fuzzy")
    body = re.sub(r'"Plural-Forms: [^"]*\\n"', f'"Plural-Forms: {PLURAL_FORMS[language]}\\\\n"', body, count=1)
    body = re.sub(r'"Language: [^"]*\\n"', f'"Language: {language}\\\\n"', body, count=1)
    body = body.replace('"Content-Type: text/plain; charset=CHARSET\\n"', '"Content-Type: text/plain; charset=UTF-8\\n"', 1)
    defaults = {"Project-Id-Version: PACKAGE VERSION": "Project-Id-Version: Marketing Hub",
                "PO-Revision-Date: YEAR-MO-DA HO:MI+ZONE": "PO-Revision-Date: 2026-12-07 06:00+0100",
                "Last-Translator: FULL NAME <EMAIL@ADDRESS>": "Last-Translator: Marketing Hub team",
                "Language-Team: LANGUAGE <LL@li.org>": "Language-Team: Polish"}
    for default, value in defaults.items():
        body = body.replace(f'"{default}\\n"', f'"{value}\\n"', 1)
    head = head.replace("# SOME DESCRIPTIVE TITLE.", "# Marketing Hub: the Polish interface.", 1)
    head = "\n".join(line for line in head.splitlines() if line not in (
        "# Copyright (C) YEAR THE PACKAGE'S COPYRIGHT HOLDER",
        "# This file is distributed under the same license as the PACKAGE package.",
        "# FIRST AUTHOR <EMAIL@ADDRESS>, YEAR.",
    ))
    po_path.write_text(f'{head}\nmsgid ""\nmsgstr ""\n{body}', encoding="utf-8")


def compile_catalogue(po_path: Path) -> None:
    mo_path = po_path.with_suffix(".mo")
    if shutil.which("msgfmt"):
        subprocess.run(["msgfmt", "--check", "-o", str(mo_path), str(po_path)], check=True)
    else:
        import polib  # type: ignore[import-untyped]  # local import: a development requirement, needed only without GNU gettext

        polib.pofile(str(po_path)).save_as_mofile(str(mo_path))


def catalogues(base: Path) -> list[Path]:
    return sorted((base / "locale").glob("*/LC_MESSAGES/*.po"))


def main(names: list[str]) -> int:
    apps = {path.name: path for path in app_dirs()}
    wanted = names or [".", *apps]
    unknown = [name for name in wanted if name != "." and name not in apps]
    if unknown:
        print(f"not an app folder: {', '.join(unknown)}", file=sys.stderr)
        return 2
    can_extract = bool(shutil.which("xgettext") and shutil.which("msgmerge"))
    if not can_extract:
        print("GNU gettext (xgettext, msgmerge) is missing: compiling the catalogues as they are", file=sys.stderr)
    for name in wanted:
        base = ROOT if name == "." else apps[name]
        if name != "." and not (base / "locale").is_dir():
            continue
        if can_extract:
            if name == ".":
                # Run inside templates/: the root catalogue holds only the shared templates (the apps'
                # code has catalogues of its own; tests, bench, .venv and static are not the UI), and
                # an --ignore of "<app>" would also skip templates/<app>/ (it matches folder names).
                _makemessages(ROOT / "templates", ROOT_IGNORES)
            else:
                _makemessages(base, ["tests"])
        for po_path in catalogues(base):
            fix_header(po_path, po_path.parent.parent.name)
            compile_catalogue(po_path)
            print(po_path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
