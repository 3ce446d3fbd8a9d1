"""Who may call what: every route the gateway serves, times every kind of credential.

The routes are read from the application itself, so a new endpoint is in the matrix the
moment it exists: it is expected to need a server key unless it is listed below as public
or as acting for a user. Bad credentials answer 401 with a Bearer challenge, a user token
on a server endpoint answers 403, and the right credential gets through (to a success, a
validation error or a 404: anything but 401, 403 or a server error).

The gateway under test requires ``aud``/``iss`` on user tokens, so a token minted for
another audience is one of the bad credentials.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from producer.gateway.app import create_app
from shared.config import Settings, set_settings
from tests.conftest import ROTATED_KEY, SERVER_KEY
from tests.gateway.credentials import (
    FOREIGN_SECRET,
    bearer,
    expired_token,
    unsigned_token,
    user_token,
)
from tests.gateway.server import LiveServer

AUDIENCE = "kai-messaging-tests"
ISSUER = "https://accounts.kai.test"
USER = "matrix-user"
#: Fills every path parameter: an id nobody has.
SAMPLE_ID = "00000000-0000-4000-8000-000000000000"


class Access(Enum):
    PUBLIC = "public"
    SERVER = "server key"
    USER = "a user"
    OWN_OR_ANY = "a user's own, or anyone's with a server key"


#: Endpoints anyone may call: probes, metrics, the inbox page (which reads its token from the
#: URL fragment, in the browser), the API description and its interactive documentation.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/inbox"),
    ("GET", "/inbox.js"),
    ("GET", "/inbox.css"),
    ("GET", "/inbox-sw.js"),
    ("GET", "/inbox/widget.js"),
    # The console's page: it asks for a server key in the browser and sends it to the API.
    ("GET", "/console"),
    ("GET", "/console.js"),
    ("GET", "/console.css"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/docs.js"),
    ("GET", "/docs/swagger-ui-bundle.js"),
    ("GET", "/docs/swagger-ui.css"),
    ("GET", "/docs/favicon.png"),
    # Twilio's status callbacks: no credential of ours, a signature of Twilio's instead.
    ("POST", "/receipts/twilio/{message_id:str}"),
    # Email tracking: the token is all there is (a pixel for any, a 404 page for a bad link).
    ("GET", "/t/o/{token:str}"),
    ("GET", "/t/c/{token:str}"),
    # Browsers need it to subscribe; it is a public key.
    ("GET", "/api/push/vapid-public-key"),
}

#: Endpoints whose credential is in the URL (a signed link): a key or token of ours changes
#: nothing, and the sample path, a link nobody signed, is refused whatever comes with it.
SIGNED_LINKS = {
    ("GET", "/unsubscribe/{token:str}"),
    ("POST", "/unsubscribe/{token:str}"),
}

#: Endpoints acting for a user: a user token, or a server key (naming the user with
#: X-User-Id; without it the answer is 400, a validation error).
USER_ENDPOINTS = {
    ("GET", "/api/notifications/devices"),
    ("POST", "/api/notifications/devices"),
    ("DELETE", "/api/notifications/devices/{device_id:str}"),
    ("GET", "/api/notifications"),
    ("GET", "/api/notifications/unread-count"),
    ("POST", "/api/notifications/seen"),
    ("POST", "/api/notifications/clicked"),
    ("POST", "/api/notifications/mark-as-read"),
    ("POST", "/api/notifications/mark-as-unread"),
    ("POST", "/api/notifications/mark-all-as-read"),
    ("POST", "/api/notifications/delete"),
    ("POST", "/api/notifications/test"),
    ("GET", "/api/notifications/stream"),
    ("GET", "/api/notifications/preferences"),
    ("PUT", "/api/notifications/preferences"),
    ("PATCH", "/api/notifications/preferences"),
}

#: Records a user may see (and cancel or reschedule) of their own and a server key of
#: anyone's: a user token, or a server key with or without X-User-Id.
OWN_OR_ANY = {
    ("GET", "/api/messages"),
    ("GET", "/api/messages/{message_id:str}"),
    ("DELETE", "/api/messages/{message_id:str}"),
    ("PATCH", "/api/messages/{message_id:str}"),
}

#: What an answer means for access control.
REFUSED = "401 + challenge"
FORBIDDEN = "403"
ALLOWED = "allowed"

WITH_CLAIMS = {"aud": AUDIENCE, "iss": ISSUER}

#: The credentials, minted once.
CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "malformed header": {"Authorization": f"Token {SERVER_KEY}"},
    "unknown key": bearer("kai_not_a_configured_key"),
    "expired token": bearer(expired_token(USER, **WITH_CLAIMS)),
    "token with a wrong signature": bearer(user_token(USER, secret=FOREIGN_SECRET, **WITH_CLAIMS)),
    "alg:none token": bearer(unsigned_token(USER, **WITH_CLAIMS)),
    "token for another audience": bearer(user_token(USER, aud="another-service", iss=ISSUER)),
    "user token": bearer(user_token(USER, **WITH_CLAIMS)),
    "server key": bearer(SERVER_KEY),
    "rotated server key": bearer(ROTATED_KEY),
    "server key + X-User-Id": {**bearer(SERVER_KEY), "X-User-Id": USER},
}

#: The matrix: credential → expected answer on a public, a server and a user endpoint.
MATRIX: dict[str, dict[Access, str]] = {
    kind: dict(zip(Access, answers, strict=True))
    for kind, *answers in [
        # credential                      public   server     user     own or any
        ("none",                          ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("malformed header",              ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("unknown key",                   ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("expired token",                 ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("token with a wrong signature",  ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("alg:none token",                ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("token for another audience",    ALLOWED, REFUSED,   REFUSED, REFUSED),
        ("user token",                    ALLOWED, FORBIDDEN, ALLOWED, ALLOWED),
        ("server key",                    ALLOWED, ALLOWED,   ALLOWED, ALLOWED),
        ("rotated server key",            ALLOWED, ALLOWED,   ALLOWED, ALLOWED),
        ("server key + X-User-Id",        ALLOWED, ALLOWED,   ALLOWED, ALLOWED),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str

    @property
    def access(self) -> Access:
        if (self.method, self.path) in PUBLIC:
            return Access.PUBLIC
        if (self.method, self.path) in USER_ENDPOINTS:
            return Access.USER
        if (self.method, self.path) in OWN_OR_ANY:
            return Access.OWN_OR_ANY
        return Access.SERVER  # the safe default for anything new

    @property
    def url(self) -> str:
        return re.sub(r"\{[^}]+\}", SAMPLE_ID, self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints(routes: list[BaseRoute], prefix: str = "") -> list[Endpoint]:
    """Every (method, path) the routes serve; HEAD is Starlette's automatic twin of GET."""
    found: list[Endpoint] = []
    for route in routes:
        if isinstance(route, Route):
            found += [Endpoint(m, prefix + route.path) for m in sorted((route.methods or set()) - {"HEAD"})]
        elif isinstance(route, Mount):
            found += endpoints(route.routes, prefix + route.path) or [Endpoint("GET", prefix + route.path)]
        else:
            raise TypeError(f"the access matrix does not know how to call {route!r}: teach it")
    return found


def served_routes() -> list[BaseRoute]:
    # Building the app only assembles objects (no connection, no file); any settings will do.
    app: Starlette = create_app(Settings.from_env({"KAI_VAR_DIR": tempfile.gettempdir()}))
    return list(app.routes)


ENDPOINTS = endpoints(served_routes())


def answer(response: httpx.Response) -> str:
    """What a response means for access control, with what was wrong about it if anything."""
    status = response.status_code
    if status in (401, 403):
        if not response.headers.get("content-type", "").startswith("application/json"):
            return f"{status} without the JSON error shape"
        body = response.json()
        if not isinstance(body.get("error"), dict) or "code" not in body["error"]:
            return f"{status} without the JSON error shape"
    if status == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        return REFUSED if challenge.startswith("Bearer ") else "401 without a challenge"
    if status == 403:
        return FORBIDDEN
    if status >= 500:
        return f"server error {status}"
    return ALLOWED


def call(client: httpx.Client, endpoint: Endpoint, headers: dict[str, str]) -> str:
    # An empty JSON object is body enough: access is decided before the body is validated.
    content = None if endpoint.method == "GET" else b"{}"
    if content is not None:
        headers = {**headers, "Content-Type": "application/json"}
    with client.stream(endpoint.method, endpoint.url, headers=headers, content=content) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()  # an open event stream is judged by its status; it never ends
        return answer(response)


@pytest.fixture(scope="module")
def client(base_env: dict[str, str]) -> Iterator[httpx.Client]:
    settings = Settings.from_env({**base_env, "USER_TOKEN_AUDIENCE": AUDIENCE, "USER_TOKEN_ISSUER": ISSUER})
    set_settings(settings)
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=20) as c:
        yield c
    set_settings(None)


def test_every_listed_endpoint_exists() -> None:
    """The lists above name only real routes (except the API description, which may be
    served by another module): a renamed endpoint must not silently become a server one."""
    served = {(e.method, e.path) for e in ENDPOINTS}
    assert served >= USER_ENDPOINTS | OWN_OR_ANY
    assert served >= PUBLIC - {("GET", "/openapi.json")}
    assert served >= SIGNED_LINKS


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_access(client: httpx.Client, endpoint: Endpoint) -> None:
    """Given the endpoint, when it is called with each kind of credential, then each answer
    is the matrix's for the endpoint's access (public, server key or user)."""
    got = {kind: call(client, endpoint, headers) for kind, headers in CREDENTIALS.items()}

    if (endpoint.method, endpoint.path) in SIGNED_LINKS:
        assert got == dict.fromkeys(CREDENTIALS, FORBIDDEN)
        return
    assert got == {kind: row[endpoint.access] for kind, row in MATRIX.items()}
