"""Schemathesis against the live server: for every operation of the OpenAPI document, examples
generated from the document (valid and invalid ones) must never answer a 5xx, and every answer
must match what the document says (its status, content type and body schema).

Bounded: ``SCHEMATHESIS_EXAMPLES`` valid and ``SCHEMATHESIS_NEGATIVE_EXAMPLES`` invalid examples
per operation (25 and 10 by default), no shrinking,
so the run stays within a few minutes on two cores. Marked ``integration``: ``.ci/run`` runs it
(``make test`` too)."""

from __future__ import annotations

import os
import time
from unittest import mock

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.models import ApiKey
from tests.automation.factories import make_rule
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import funnel_with_stages

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Examples per operation: valid ones, and invalid ones (fewer: each is refused by the same parser).
EXAMPLES = {GenerationMode.POSITIVE: int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25")),
            GenerationMode.NEGATIVE: int(os.environ.get("SCHEMATHESIS_NEGATIVE_EXAMPLES", "10"))}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def world(transactional_db):
    """Something for the generated requests to find: a contact, a rule, a funnel."""
    contact = ContactFactory(email="ala@example.com")
    give_tag(contact, "kurtki", 3)
    make_rule()
    funnel_with_stages()
    return contact


def _run_operation(operation, *, base_url: str, headers: dict, mode: GenerationMode) -> str | None:
    """Run the examples of one operation in one mode; the first failure's report, or None."""
    failure: list[str] = []

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def examples(case) -> None:
        if failure:
            return
        try:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        except AssertionError as exc:  # schemathesis reports check failures as AssertionError subclasses
            failure.append(f"{operation.label} [{mode.value}]:\n{str(exc)[:3000]}")

    try:
        examples()
    except Unsatisfiable:
        # Negative mode for an operation without inputs: no invalid request exists.
        assert mode == GenerationMode.NEGATIVE, operation.label
    return failure[0] if failure else None


def test_no_server_errors_and_no_schema_violations(live_server, world):
    # given the live API, its document and an admin key
    _, raw_key = ApiKey.issue(name="schemathesis", scope=ApiKey.SCOPE_ADMIN)
    headers = {"Authorization": f"Bearer {raw_key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json")
    failures: list[str] = []
    # when every operation gets generated valid and invalid requests (no real broker: the work
    # they would enqueue is not what is under test)
    with mock.patch("celery.app.task.Task.apply_async"):
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                started = time.monotonic()
                report = _run_operation(operation, base_url=live_server.url, headers=headers, mode=mode)
                print(f"{operation.label} [{mode.value}]: {time.monotonic() - started:.1f} s")
                if report:
                    failures.append(report)
    # then no answer was a 5xx or broke the document
    assert not failures, "\n\n".join(failures)
