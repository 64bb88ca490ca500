"""The lint helpers in .ci/: the function-level import check and the mypy baseline's bookkeeping."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load("check_local_imports")
baseline = _load("mypy_baseline")


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_an_unexplained_function_level_project_import_is_reported(tmp_path, monkeypatch):
    # given a module with three function-level imports: a project one, an explained one, a library one
    monkeypatch.setattr(check, "ROOT", tmp_path)
    path = _write(tmp_path, "views.py", """
        def page():
            from contacts.models import Contact
            return Contact


        def job():
            # local import: segments.tasks imports this module
            from segments.tasks import refresh_task
            from segments.tasks import other_task
            import json
            return refresh_task, other_task, json
    """)
    # when checked
    found = check.offenders(path)
    # then only the unexplained project import is reported (one comment explains a group)
    assert found == ["views.py:3: contacts.models"]


def test_app_config_ready_may_import_locally(tmp_path, monkeypatch):
    # given an AppConfig.ready() connecting receivers, and the same import in another function
    monkeypatch.setattr(check, "ROOT", tmp_path)
    path = _write(tmp_path, "apps.py", """
        class LeadsConfig:
            def ready(self):
                from contacts.signals import contacts_changed

            def other(self):
                from contacts.signals import contacts_changed
    """)
    # then only the import outside ready() is reported
    assert check.offenders(path) == ["apps.py:7: contacts.signals"]


def test_the_baseline_block_round_trips_and_only_lists_what_it_is_given():
    # given a pyproject text with hand-written configuration around a generated baseline
    head = '[tool.mypy]\nfiles = ["core"]\n'
    text = head + "\n" + baseline.block(["core.audit", "leads.views"]) + '\n[tool.other]\nkey = 1\n'
    # when the block is split off
    config, body = baseline._split(text)
    # then the configuration outside it is kept whole and the body lists exactly the modules
    assert config == head + '\n[tool.other]\nkey = 1\n'
    assert '"core.audit"' in body and '"leads.views"' in body and "ignore_errors = true" in body
    assert baseline._module("core/jobs/__init__.py") == "core.jobs"
    assert baseline._module("contacts/views/card.py") == "contacts.views.card"
