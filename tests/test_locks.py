"""The advisory-lock registry: one key scheme, and no two namespaces share a key."""

from __future__ import annotations

import re
from pathlib import Path

from core import locks

ROOT = Path(__file__).resolve().parent.parent


def _namespaces() -> list[locks.LockNamespace]:
    return [value for value in vars(locks).values() if isinstance(value, locks.LockNamespace)]


def test_every_namespace_has_its_own_key_and_name():
    # given the registry
    namespaces = _namespaces()
    # then no two namespaces share a key (they would take each other's locks) or a name
    assert len(namespaces) >= 8
    assert len({namespace.key for namespace in namespaces}) == len(namespaces)
    assert len({namespace.name for namespace in namespaces}) == len(namespaces)


def test_no_area_takes_an_advisory_lock_outside_the_registry():
    # given the application code (migrations define SQL functions once and keep their history)
    sources = [
        path for path in ROOT.glob("*/**/*.py")
        if path.parts[len(ROOT.parts)] not in {"tests", ".venv", "bench"} and "migrations" not in path.parts
    ]
    # when looking for hand-written advisory-lock calls
    offenders = [
        str(path.relative_to(ROOT)) for path in sources
        if path.name != "locks.py" and re.search(r"pg_(try_)?advisory_(xact_)?lock\(", path.read_text())
        and path.relative_to(ROOT).as_posix() != "marketing_hub/broker.py"
    ]
    # then only core/locks.py writes them (the broker runs its one on a SQLAlchemy connection,
    # with BROKER_SCHEMA's key)
    assert offenders == []
