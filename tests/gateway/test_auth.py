"""``producer/gateway/auth.py``: which credentials identify whom, and which are refused.

The checks run on the request alone, so these tests build requests directly; the HTTP-level
matrix over every endpoint is ``test_access_matrix.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from starlette.requests import Request

from producer.gateway.auth import TOKEN_LEEWAY_SECONDS, Kind, authenticate, require_user_for_stream
from producer.gateway.errors import ApiError
from producer.gateway.ratelimit import GatewayLimits
from shared.config import Settings
from tests.conftest import ROTATED_KEY, SERVER_KEY, USER_TOKEN_SECRET
from tests.gateway.credentials import FOREIGN_SECRET, hs512_token, rsa_token, unsigned_token, user_token

OLD_SECRET = "the-secret-user-tokens-were-signed-with-last-month-0123"
OTHER_OLD_SECRET = "another-retired-secret-still-listed-for-rotation-4567"
AUDIENCE = "kai-messaging"
ISSUER = "https://accounts.example.com"


def settings_of(**env: str) -> Settings:
    return Settings.from_env(
        {"API_KEYS": f"{SERVER_KEY},{ROTATED_KEY}", "USER_TOKEN_SECRET": USER_TOKEN_SECRET, **env}
    )


#: What the auth functions need of the app once a caller is known: its rate limits, off here
#: (tests/gateway/test_ratelimit.py covers them).
UNLIMITED_APP = SimpleNamespace(
    state=SimpleNamespace(rate_limits=GatewayLimits(Settings.from_env({"RATE_LIMIT_ENABLED": "false"})))
)


def request_with(headers: dict[str, str], query: str = "") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "app": UNLIMITED_APP,
        }
    )


def who(settings: Settings, credential: str, **headers: str) -> tuple[Kind, str | None]:
    principal = authenticate(request_with({"Authorization": f"Bearer {credential}", **headers}), settings)
    return principal.kind, principal.user_id


def refusal(call: Callable[[], Any]) -> tuple[int, str, str | None]:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.status, caught.value.code, caught.value.headers.get("WWW-Authenticate")


def test_every_configured_server_key_is_accepted() -> None:
    """Given two keys in API_KEYS (a rotation), both identify the server, acting for nobody
    unless X-User-Id names a user."""
    settings = settings_of()

    assert who(settings, SERVER_KEY) == (Kind.SERVER, None)
    assert who(settings, ROTATED_KEY) == (Kind.SERVER, None)
    assert who(settings, ROTATED_KEY, **{"X-User-Id": "alice"}) == (Kind.SERVER, "alice")


BEYOND = TOKEN_LEEWAY_SECONDS + 600
WITHIN = TOKEN_LEEWAY_SECONDS // 2

#: Configurations the table below refers to.
PLAIN: dict[str, str] = {}
AUD = {"USER_TOKEN_AUDIENCE": AUDIENCE}
ISS = {"USER_TOKEN_ISSUER": ISSUER}
ROTATING = {"USER_TOKEN_PREVIOUS_SECRETS": f"{OTHER_OLD_SECRET},{OLD_SECRET}"}

Mint = Callable[[], str]

#: Claims holding a time, given below in seconds from the moment the token is minted.
TIMES = ("exp", "nbf", "iat")


def timed(claims: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {name: now + value if name in TIMES else value for name, value in claims.items()}


def token(**extra: Any) -> Mint:
    """Alice's token, minted when the test runs: a token minted at import would age while
    the rest of the suite runs, and the cases at the edge of the leeway would drift over it."""
    return lambda: user_token("alice", **timed(extra))


def raw(claims: dict[str, Any]) -> Mint:
    """Exactly ``claims`` (times relative, as above), nothing added."""
    return lambda: jwt.encode(timed(claims), USER_TOKEN_SECRET, algorithm="HS256")


#: (case, configuration, token, accepted?)
TOKENS: list[tuple[str, dict[str, str], Mint, bool]] = [
    ("plain token", PLAIN, token(), True),
    ("aud not configured: an aud claim is ignored", PLAIN, token(aud="someone-else"), True),
    ("iss not configured: an iss claim is ignored", PLAIN, token(iss="https://x.example"), True),
    ("aud configured and matching", AUD, token(aud=AUDIENCE), True),
    ("aud configured, one of several", AUD, token(aud=["x", AUDIENCE]), True),
    ("aud configured, token has none", AUD, token(), False),
    ("aud configured, token has another", AUD, token(aud="other"), False),
    ("iss configured and matching", ISS, token(iss=ISSUER), True),
    ("iss configured, token has none", ISS, token(), False),
    ("iss configured, token has another", ISS, token(iss="https://evil.example"), False),
    ("expired beyond the leeway", PLAIN, token(exp=-BEYOND), False),
    ("expired within the leeway", PLAIN, token(exp=-WITHIN), True),
    ("nbf in the future beyond the leeway", PLAIN, token(nbf=BEYOND), False),
    ("nbf in the future within the leeway", PLAIN, token(nbf=WITHIN), True),
    ("iat in the future beyond the leeway", PLAIN, token(iat=BEYOND), False),
    ("iat in the past", PLAIN, token(iat=-60), True),
    ("no exp", PLAIN, raw({"sub": "alice"}), False),
    ("no sub", PLAIN, raw({"exp": BEYOND}), False),
    ("empty sub", PLAIN, lambda: user_token(""), False),
    ("signed with an unknown secret", PLAIN, token(secret=FOREIGN_SECRET), False),
    ("alg none", PLAIN, lambda: unsigned_token("alice"), False),
    ("HS512 with the right secret", PLAIN, lambda: hs512_token("alice"), False),
    ("RS256", PLAIN, lambda: rsa_token("alice"), False),
    ("signed with a previous secret", ROTATING, token(secret=OLD_SECRET), True),
    ("previous secret no longer listed", PLAIN, token(secret=OLD_SECRET), False),
    ("previous secret, but expired", ROTATING, token(secret=OLD_SECRET, exp=-BEYOND), False),
]


@pytest.mark.parametrize(("env", "mint", "accepted"), [t[1:] for t in TOKENS], ids=[t[0] for t in TOKENS])
def test_user_tokens(env: dict[str, str], mint: Mint, accepted: bool) -> None:
    """Given the configuration and a token, then the token identifies its subject, or is
    refused with 401 and a Bearer challenge."""
    settings, credential = settings_of(**env), mint()

    if accepted:
        assert who(settings, credential) == (Kind.USER, "alice")
    else:
        status, code, challenge = refusal(lambda: who(settings, credential))
        assert (status, code) == (401, "invalid_token")
        assert challenge is not None and challenge.startswith("Bearer")


def literal(**claims: Any) -> str:
    """Alice's token with ``claims`` exactly as given (no times added), as any issuer or
    forger could sign them."""
    return jwt.encode({"sub": "alice", **claims}, USER_TOKEN_SECRET, algorithm="HS256")


LATER = int(time.time()) + 3600
#: 3000-01-01T00:00:00Z: no token is meant to live past it.
YEAR_3000 = 32503680000

#: (case, claims) of tokens correctly signed whose times are not NumericDates.
BAD_TIMES: list[tuple[str, dict[str, Any]]] = [
    ("exp a string", {"exp": str(LATER)}),
    ("exp a far-future string", {"exp": "99999999999"}),
    ("exp 1e300", {"exp": 1e300}),
    ("exp infinite", {"exp": float("inf")}),
    ("exp not a number", {"exp": float("nan")}),
    ("exp true", {"exp": True}),
    ("exp past the year 3000", {"exp": YEAR_3000 + 1}),
    ("exp negative", {"exp": -1}),
    ("exp an object", {"exp": {"at": LATER}}),
    ("iat a string", {"exp": LATER, "iat": str(LATER - 60)}),
    ("iat 1e300", {"exp": LATER, "iat": -1e300}),
    ("nbf a string", {"exp": LATER, "nbf": "0"}),
    ("nbf false", {"exp": LATER, "nbf": False}),
]


@pytest.mark.parametrize("claims", [c for _, c in BAD_TIMES], ids=[n for n, _ in BAD_TIMES])
def test_times_must_be_numeric_dates(claims: dict[str, Any]) -> None:
    """Given a correctly signed token whose exp, iat or nbf is not a JSON number of seconds
    between 1970 and 3000 (RFC 7519's NumericDate), then it is refused with 401: PyJWT alone
    would read "99999999999" or 1e300 as a time and accept a token that never expires."""
    status, code, challenge = refusal(lambda: who(settings_of(), literal(**claims)))

    assert (status, code, challenge is not None) == (401, "invalid_token", True)


def test_numeric_dates_may_be_fractional() -> None:
    """RFC 7519 allows a NumericDate with a fraction of a second."""
    assert who(settings_of(), literal(exp=LATER + 0.5, iat=time.time() - 1.5, nbf=0)) == (Kind.USER, "alice")


def test_a_user_tokens_subject_wins_over_x_user_id() -> None:
    assert who(settings_of(), user_token("alice"), **{"X-User-Id": "bob"}) == (Kind.USER, "alice")


def test_no_user_token_verifies_when_no_secret_is_configured() -> None:
    """Without USER_TOKEN_SECRET, any token is an unknown credential, not a user."""
    settings = Settings.from_env({"API_KEYS": SERVER_KEY})

    assert refusal(lambda: who(settings, user_token("alice")))[:2] == (401, "unauthenticated")


def test_a_server_key_is_refused_in_the_stream_query_parameter() -> None:
    """Given a server key as ``access_token`` (it would end up in logs), then 401 with a
    challenge; a user token there is accepted."""
    settings = settings_of()

    status, _, challenge = refusal(
        lambda: require_user_for_stream(request_with({}, f"access_token={SERVER_KEY}"), settings)
    )
    principal = require_user_for_stream(request_with({}, f"access_token={user_token('alice')}"), settings)

    assert (status, challenge is not None) == (401, True)
    assert (principal.kind, principal.user_id) == (Kind.USER, "alice")
