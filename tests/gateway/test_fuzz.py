"""Property-based fuzzing of the whole gateway from its own ``/openapi.json`` (schemathesis),
against a live gateway on the real PostgreSQL, RabbitMQ and Redis.

Every operation gets valid and invalid requests, sent with a server key, with a user token
and with no credential. Whatever comes back must not be a server error, must be a status
the document lists with the body and media type it documents, must be the JSON error shape
whenever it is not a success, and must come before the request timeout. Generation is
derandomized and bounded, so every run sends the same requests and the test stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks as schemathesis_checks
from schemathesis.specs.openapi import checks as openapi_checks

from producer.gateway.app import create_app
from shared.config import Settings, set_settings
from tests.conftest import SERVER_KEY
from tests.gateway.inbox import user_token
from tests.gateway.server import LiveServer

#: Examples per operation and credential mix; enough to reach past validation into the
#: handlers while keeping the whole module near a minute on a busy two-core machine.
EXAMPLES_PER_OPERATION = 30

#: A request that takes longer than this has hung.
REQUEST_TIMEOUT_SECONDS = 15

#: How a generated request is sent: mostly with the credential its operation asks for (so
#: requests get past authentication), sometimes with the other kind or none at all.
CREDENTIALS = ("expected",) * 6 + ("other kind", "none")

CHECKS = [
    schemathesis_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260101,
        # The coverage phase adds little here and would double the run time.
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"mode": "all", "max-examples": EXAMPLES_PER_OPERATION},
    }
)


@pytest.fixture(scope="module")
def gateway(base_env: dict[str, str]) -> Iterator[str]:
    config = Settings.from_env(base_env)
    set_settings(config)
    with LiveServer(create_app(config)) as server:
        yield server.url
    set_settings(None)


#: The document as the gateway builds it (the same on every configuration; checked below
#: against the one the live gateway serves). Loaded at import: pytest collects one test per
#: operation from it.
DOCUMENT: dict[str, Any] = create_app(Settings.from_env({})).state.openapi

schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(
    # An accepted stream stays open by design; tests/gateway/test_stream.py covers it.
    path="/api/notifications/stream"
)


def test_the_fuzzed_document_is_the_one_the_gateway_serves(gateway: str) -> None:
    served = httpx.get(f"{gateway}/openapi.json", timeout=REQUEST_TIMEOUT_SECONDS)
    assert served.json() == DOCUMENT


def _authorization(case: Any, credential: str) -> dict[str, str]:
    if credential == "none":
        return {}
    security = case.operation.definition.raw.get("security", [])
    wants_user = {"userToken": []} in security
    if (credential == "expected") == wants_user:
        return {"Authorization": f"Bearer {user_token('fuzz-user')}"}
    return {"Authorization": f"Bearer {SERVER_KEY}"}


@schema.parametrize()
@schema.given(credential=st.sampled_from(CREDENTIALS))
@settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_gateway_survives_its_own_document(case: Any, credential: str, gateway: str) -> None:
    """Given any request the document allows (or breaks on purpose), then the gateway answers
    as documented: never 5xx, errors as JSON, and in time."""
    case.headers = {**(case.headers or {}), **_authorization(case, credential)}
    response = case.call_and_validate(base_url=gateway, checks=CHECKS, timeout=REQUEST_TIMEOUT_SECONDS)
    if response.status_code >= 300:
        body = response.json()
        assert set(body) == {"error"}, response.text
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
        assert isinstance(body["error"]["details"], list)
