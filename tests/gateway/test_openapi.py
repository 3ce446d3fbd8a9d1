"""``GET /openapi.json``: public, a valid OpenAPI document, and exactly the operations the
gateway serves, with request bodies described by the models that validate them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.events import EventRequest
from producer.gateway.app import create_app
from producer.gateway.openapi import Auth, Reply, UndocumentedRoute, build, operation
from shared.config import Settings
from tests.gateway.server import LiveServer

#: Starlette answers HEAD for every GET route on its own; the document lists GET only.
IMPLICIT = {"HEAD"}


@pytest.fixture
def document(settings: Settings) -> Iterator[dict[str, Any]]:
    with LiveServer(create_app(settings)) as server:
        response = httpx.get(f"{server.url}/openapi.json", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        yield response.json()


def test_the_document_is_public_and_valid_openapi(document: dict[str, Any]) -> None:
    """Given no credential, when /openapi.json is fetched, then it is an OpenAPI 3.1 document
    the reference validator accepts."""
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_lists_exactly_what_the_gateway_serves(
    settings: Settings, document: dict[str, Any]
) -> None:
    """Then every (path, method) the application routes is documented, and nothing else."""
    served = {
        (route.path_format, method)
        for route in create_app(settings).routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - IMPLICIT
    }
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}

    assert documented == served
    assert ("/api/messages/email", "POST") in documented
    assert ("/api/webhooks/configurations/{endpoint_id}", "DELETE") in documented


def test_operations_document_their_credentials_and_the_error_shape(document: dict[str, Any]) -> None:
    """Then server-key operations demand the server key and answer 401/403; user operations
    take a user token or a server key with X-User-Id; every error answer is the Error shape."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["serverKey"] == {**schemes["serverKey"], "type": "http", "scheme": "bearer"}
    assert schemes["userToken"]["bearerFormat"] == "JWT"

    send = document["paths"]["/api/messages/sms"]["post"]
    assert send["security"] == [{"serverKey": []}]
    assert {"401", "403", "413", "415", "422", "429", "503"} <= set(send["responses"])

    feed = document["paths"]["/api/notifications"]["get"]
    assert {"userToken": []} in feed["security"]
    assert any(p["name"] == "X-User-Id" and p["in"] == "header" for p in feed["parameters"])
    assert {p["name"] for p in feed["parameters"]} >= {"status", "type", "since", "cursor", "limit"}

    assert document["paths"]["/healthz"]["get"]["security"] == []
    for name, response in document["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, name
    error = document["components"]["schemas"]["ErrorInfo"]
    assert set(error["required"]) == {"code", "message", "details"}


def test_request_bodies_are_the_models_that_validate_them(document: dict[str, Any]) -> None:
    """Then POST /api/events describes its body with EventRequest's own JSON schema."""
    body = document["paths"]["/api/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EventRequest"}
    _, definitions = models_json_schema(
        [(EventRequest, "validation")], ref_template="#/components/schemas/{model}"
    )
    assert document["components"]["schemas"]["EventRequest"] == definitions["$defs"]["EventRequest"]
    email = document["paths"]["/api/messages/email"]["post"]["requestBody"]["content"]["application/json"]
    assert email["schema"]["anyOf"][1] == {"$ref": "#/components/schemas/TemplatedEmailRequest"}
    assert "templateRef" not in document["components"]["schemas"]["TemplatedEmailRequest"]["properties"]


def test_inbox_engagement_and_the_transactional_flag_are_described(document: dict[str, Any]) -> None:
    """Then seen and clicked are user operations taking the id list, feed items carry
    ``seenAt``, receipts may be ``seen``, and every send and rule takes ``transactional`` as a
    boolean."""
    schemas = document["components"]["schemas"]
    for path, answer in (
        ("/api/notifications/seen", "MarkedSeen"),
        ("/api/notifications/clicked", "Clicked"),
    ):
        post = document["paths"][path]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/IdsInput"
        }
        reply = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert reply == {"$ref": f"#/components/schemas/{answer}"}
        assert {"userToken": []} in post["security"]
    assert "seenAt" in schemas["Notification"]["required"]
    assert "seen" in schemas["ReceiptView"]["properties"]["type"]["enum"]
    for model in ("EmailRequest", "TemplatedEmailRequest", "SmsRequest", "WebhookRequest", "InAppRequest"):
        assert schemas[model]["properties"]["transactional"] | {"description": "…"} == {
            "default": False,
            "description": "…",
            "title": "Transactional",
            "type": "boolean",
        }, model
    assert schemas["RuleInput"]["properties"]["transactional"]["type"] == "boolean"
    assert schemas["MessageStatus"]["properties"]["transactional"]["type"] == "boolean"


async def _undescribed(_request: Request) -> JSONResponse:
    return JSONResponse({})


@operation("GET", "Described", auth=Auth.PUBLIC, replies=[Reply(200, "ok")])
async def _described(_request: Request) -> JSONResponse:
    return JSONResponse({})


def test_a_route_without_a_description_cannot_be_served() -> None:
    """Given a route whose endpoint has no @operation, or a method it does not describe, then
    building the document (which the application does at start) fails naming it."""
    with pytest.raises(UndocumentedRoute, match="GET /new"):
        build([Route("/new", _undescribed, methods=["GET"])], title="t", version="1")
    with pytest.raises(UndocumentedRoute, match="POST /described"):
        build([Route("/described", _described, methods=["GET", "POST"])], title="t", version="1")


def test_every_put_has_a_patch_and_both_say_what_they_do(document: dict[str, Any]) -> None:
    """Given a resource that can be replaced, then it can be patched too, and both operations
    state their semantics: a whole document for PUT, a JSON merge patch for PATCH."""
    with_put = {path for path, item in document["paths"].items() if "put" in item}
    with_patch = {path for path, item in document["paths"].items() if "patch" in item}

    assert with_put and with_put <= with_patch
    for path in with_put:
        assert "Replaces the whole document" in document["paths"][path]["put"]["description"]
        assert "JSON merge patch (RFC 7396)" in document["paths"][path]["patch"]["description"]


def test_every_creating_post_documents_the_idempotency_key(document: dict[str, Any]) -> None:
    creating = [
        "/api/templates",
        "/api/rules",
        "/api/webhooks/configurations",
        "/api/notifications/test",
    ]

    for path in creating:
        headers = [p["name"] for p in document["paths"][path]["post"]["parameters"] if p["in"] == "header"]
        assert "Idempotency-Key" in headers, path


def test_every_list_pages_by_cursor(document: dict[str, Any]) -> None:
    """Given an operation answering a list, then it takes ``limit`` and ``cursor`` and its
    answer is ``{items, nextCursor}``."""
    schemas = document["components"]["schemas"]
    lists = 0
    for item in document["paths"].values():
        get = item.get("get", {})
        reply = get.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
        ref = reply.get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.rsplit("/", 1)[-1], {})
        if "items" in schema.get("properties", {}):
            lists += 1
            assert set(schema["properties"]) == {"items", "nextCursor"}
            assert {"limit", "cursor"} <= {p["name"] for p in get["parameters"]}
    assert lists >= 6


def test_digests_and_throttles_are_described(document: dict[str, Any]) -> None:
    """Then a rule's digest and throttle and a user's digest choices are in the schemas, each
    with what it accepts."""
    schemas = document["components"]["schemas"]
    digest = schemas["DigestInput"]["properties"]
    assert {"window", "cadence", "key", "maxItems"} <= set(digest)
    assert "daily at HH:MM" in digest["cadence"]["description"]
    assert schemas["ThrottleInput"]["properties"]["then"]["enum"] == ["digest", "skip"]
    choices = schemas["PreferencesInput"]["properties"]["digest"]
    assert choices["additionalProperties"]["enum"] == ["instant", "hourly", "daily", "weekly", "off"]
    assert "digest" in schemas["Preferences"]["properties"]
    assert {"digest", "throttle"} <= set(schemas["Rule"]["properties"])
