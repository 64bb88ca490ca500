"""The OpenAPI document describes what the API answers: every request body, and every status the
shared machinery can return on each operation."""

from __future__ import annotations

import pytest

from automation.rules import action_types

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def document(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_every_operation_documents_its_error_statuses(document):
    # given every operation of the document
    missing = []
    for path, method, operation in _operations(document):
        responses = set(operation["responses"])
        expected = set()
        if operation.get("security"):
            expected |= {"401", "413", "503"}
        if operation.get("parameters") or operation.get("requestBody"):
            expected.add("400")
        if "{" in path:
            expected.add("404")
        if not expected <= responses:
            missing.append(f"{method.upper()} {path}: {sorted(expected - responses)}")
    # then none lacks a status it can answer
    assert not missing, missing


def test_admin_operations_document_403_and_ingest_ones_do_not(document):
    ops = {(path, method): operation for path, method, operation in _operations(document)}
    assert "403" in ops[("/api/v1/rules", "post")]["responses"]
    assert "403" in ops[("/api/v1/contacts/{email}", "get")]["responses"]
    # an ingest operation takes admin keys too: it never answers 403
    assert "403" not in ops[("/api/v1/events", "post")]["responses"]
    assert "403" not in ops[("/api/v1/contacts", "post")]["responses"]


@pytest.mark.parametrize(("path", "method"), [
    ("/api/v1/rules", "post"), ("/api/v1/rules/{rule_id}", "patch"), ("/api/v1/loyalty/programs", "post"),
    ("/api/v1/loyalty/programs/{program_id}", "put"), ("/api/v1/loyalty/programs/{program_id}/preview", "post"),
    ("/api/v1/segments/preview", "post"), ("/api/v1/segments", "post"), ("/api/v1/funnels", "post"),
    ("/api/v1/contacts", "post"), ("/api/v1/events", "post"), ("/api/v1/settings/temperature", "put"),
])
def test_every_write_shows_its_request_body(document, path, method):
    body = document["paths"][path][method].get("requestBody")
    assert body and body["content"]["application/json"]["schema"]


def test_rule_actions_and_segment_leaves_are_discriminated_unions(document):
    schemas = document["components"]["schemas"]
    actions = schemas["RuleIn"]["properties"]["actions"]["items"]
    assert actions["discriminator"]["propertyName"] == "type"
    # the documented actions are exactly the ones the rules engine knows (its own and contributed)
    assert set(actions["discriminator"]["mapping"]) == set(action_types())
    assert "birth_date" in schemas["ContactIn"]["properties"]
    metric = schemas["ProgramIn"]["properties"]["metric"]
    assert set(metric["discriminator"]["mapping"]) == {"tag_score", "purchase_count", "purchase_total", "score"}
