"""Who is calling: a server key from ``API_KEYS`` or a user token (JWT HS256 signed with
``USER_TOKEN_SECRET``, ``sub`` = user id, ``exp`` required).

Server keys are compared in constant time against every configured key (several may be
valid at once, for rotation). A server key may act for a user with ``X-User-Id``.
Once the caller is known and of the right kind, the request is charged to its rate-limit
budget (:mod:`producer.gateway.ratelimit`): on server endpoints the key's own, on
user-acting endpoints the user's (and, for a server key acting for one, the key's own too).

A user token is accepted only when signed with HS256 (never ``alg: none``, never an RS/ES
algorithm, so a public key can never pass for the HMAC secret) by ``USER_TOKEN_SECRET`` or
one of ``USER_TOKEN_PREVIOUS_SECRETS``, with times (``exp``, ``nbf``, ``iat``) that are JSON
numbers of seconds between 1970 and 3000, not expired, not dated (``nbf``/``iat``) in the
future beyond the leeway, and carrying the configured ``aud``/``iss`` when
``USER_TOKEN_AUDIENCE``/``USER_TOKEN_ISSUER`` are set. Anything else is 401 with a
``WWW-Authenticate`` challenge; the right credential on the wrong endpoint is 403.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum
from typing import Any

import jwt
from starlette.requests import Request

from producer.gateway import ratelimit
from producer.gateway.errors import ApiError
from producer.idempotency import server_key_scope, user_scope
from shared.config import Settings
from shared.messages import ID_MAX_CHARS

#: Clock skew tolerated on ``exp``/``nbf``/``iat`` between the token issuer and us.
TOKEN_LEEWAY_SECONDS = 30

#: The only algorithm a user token may be signed with. Listing it is what makes PyJWT refuse
#: ``alg: none`` and algorithm confusion (https://pyjwt.readthedocs.io/en/stable/usage.html).
TOKEN_ALGORITHMS = ["HS256"]

#: Claims holding a time, a NumericDate (https://www.rfc-editor.org/rfc/rfc7519#section-2).
TIME_CLAIMS = ("exp", "nbf", "iat")
#: 3000-01-01T00:00:00Z: a token naming a later time is a mistake, or meant never to expire.
LATEST_NUMERIC_DATE = 32_503_680_000


class _NumericDatesOnly(jwt.PyJWT):
    """PyJWT reads a time claim with ``int()``, so ``"99999999999"`` (a string), ``true`` or
    ``1e300`` would pass for a time. Its payload hook for subclasses refuses them first."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        payload = super()._decode_payload(decoded)
        for claim in TIME_CLAIMS:
            if claim in payload and not _is_numeric_date(payload[claim]):
                raise jwt.InvalidTokenError(
                    f"the {claim} claim must be a number of seconds from 1970 to 3000"
                )
        return payload


def _is_numeric_date(value: Any) -> bool:
    # bool is an int to Python, not a number to JSON; the range also excludes NaN and infinity.
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= LATEST_NUMERIC_DATE
    )


_TOKENS = _NumericDatesOnly()


class Kind(Enum):
    SERVER = "server"
    USER = "user"


@dataclass(frozen=True)
class Principal:
    kind: Kind
    #: The user acted for: the token's ``sub``, or a server key's ``X-User-Id``.
    user_id: str | None
    #: Names a server key (in rate-limit budgets and logs) without revealing it.
    key_fingerprint: str | None = None

    @property
    def idempotency_scope(self) -> str:
        """Where this caller's idempotency keys live: its server key's, or its user's."""
        if self.key_fingerprint is not None:
            return server_key_scope(self.key_fingerprint)
        return user_scope(self.user_id or "")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "unauthenticated", "missing Authorization header", headers=_challenge())
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise ApiError(
            401, "unauthenticated", "use 'Authorization: Bearer <key or token>'", headers=_challenge()
        )
    return credential.strip()


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="kai-messaging"'}


def _is_server_key(settings: Settings, credential: str) -> bool:
    given = credential.encode()
    # Check every key so the time taken does not reveal which one (or whether any) matched.
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def authenticate(request: Request, settings: Settings) -> Principal:
    return _principal(request, settings, _bearer(request))


def _principal(request: Request, settings: Settings, credential: str) -> Principal:
    if _is_server_key(settings, credential):
        user_id = request.headers.get("x-user-id") or None
        return Principal(Kind.SERVER, user_id, key_fingerprint=ratelimit.fingerprint(credential))
    if credential.count(".") == 2 and settings.user_token_secret:
        try:
            claims = _verified_claims(settings, credential)
        except jwt.PyJWTError as exc:
            raise ApiError(401, "invalid_token", f"invalid user token: {exc}", headers=_challenge()) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise ApiError(401, "invalid_token", "user token has no subject", headers=_challenge())
        if len(subject) > ID_MAX_CHARS:
            raise ApiError(
                401, "invalid_token", f"token subject over {ID_MAX_CHARS} characters", headers=_challenge()
            )
        return Principal(Kind.USER, subject)
    raise ApiError(401, "unauthenticated", "unknown API key or token", headers=_challenge())


def _verified_claims(settings: Settings, token: str) -> dict[str, Any]:
    """The token's claims once every check passed; raises :class:`jwt.PyJWTError` otherwise.
    Each accepted secret is tried in turn, so tokens signed before a rotation stay valid."""
    audience, issuer = settings.user_token_audience, settings.user_token_issuer
    required = ["exp", "sub"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
    secrets = [s for s in (settings.user_token_secret, *settings.user_token_previous_secrets) if s]
    failure: jwt.PyJWTError = jwt.InvalidSignatureError("no user token secret is configured")
    for secret in secrets:
        try:
            claims: dict[str, Any] = _TOKENS.decode(
                token,
                secret,
                algorithms=TOKEN_ALGORITHMS,
                # Without a configured audience, an ``aud`` claim is neither required nor checked.
                options={"require": required, "verify_aud": bool(audience)},
                audience=audience,
                issuer=issuer,
                leeway=TOKEN_LEEWAY_SECONDS,
            )
            return claims
        except jwt.InvalidSignatureError as exc:
            failure = exc  # perhaps signed with the next secret
    raise failure


def _user_token(request: Request, settings: Settings, credential: str) -> Principal:
    if _is_server_key(settings, credential):
        # A server key in a URL would end up in proxy logs and browser history.
        raise ApiError(
            401, "unauthenticated", "only a user token may be given as access_token", headers=_challenge()
        )
    return _principal(request, settings, credential)


def require_server(request: Request, settings: Settings) -> Principal:
    principal = authenticate(request, settings)
    if principal.kind is not Kind.SERVER:
        raise ApiError(403, "forbidden", "this endpoint needs a server API key, not a user token")
    # Server endpoints act for the key, whatever X-User-Id says: one budget per key.
    ratelimit.charge(request, key_fingerprint=principal.key_fingerprint, user_id=None)
    return principal


def require_user(request: Request, settings: Settings) -> Principal:
    """A user token, or a server key acting for a user through ``X-User-Id``."""
    principal = authenticate(request, settings)
    if principal.user_id is None:
        raise ApiError(400, "user_required", "a server key must name the user with X-User-Id")
    return _charged_as_user(request, principal)


def require_reader(request: Request, settings: Settings) -> Principal:
    """A server key, or a user token: for reads a user may make of their own records and a
    server key of anyone's. A server key naming a user with ``X-User-Id`` reads as that user."""
    principal = authenticate(request, settings)
    if principal.user_id is None:
        ratelimit.charge(request, key_fingerprint=principal.key_fingerprint, user_id=None)
        return principal
    return _charged_as_user(request, principal)


def _charged_as_user(request: Request, principal: Principal) -> Principal:
    assert principal.user_id is not None
    if len(principal.user_id) > ID_MAX_CHARS:
        # User ids are stored in columns of this width: refuse here rather than fail there.
        raise ApiError(400, "invalid_user_id", f"X-User-Id is longer than {ID_MAX_CHARS} characters")
    ratelimit.charge(request, key_fingerprint=principal.key_fingerprint, user_id=principal.user_id)
    return principal


#: The query parameter carrying a user token where headers cannot be set (``EventSource``).
TOKEN_PARAMETER = "access_token"


def require_user_for_stream(request: Request, settings: Settings) -> Principal:
    """Like :func:`require_user`, also accepting a user token (never a server key) in the
    ``access_token`` query parameter, because browsers' ``EventSource`` cannot send headers."""
    token = request.query_params.get(TOKEN_PARAMETER)
    if token is None or "authorization" in request.headers:
        return require_user(request, settings)
    principal = _user_token(request, settings, token.strip())
    if principal.user_id is None:
        raise ApiError(401, "unauthenticated", "unknown token", headers=_challenge())
    ratelimit.charge(request, key_fingerprint=None, user_id=principal.user_id)
    return principal


def app_settings(request: Request) -> Settings:
    """The application's settings, for endpoints whose caller proves itself otherwise (a
    provider's signature, a signed link)."""
    settings: Settings = request.app.state.service.settings
    return settings


def server_settings(request: Request) -> Settings:
    """The application's settings, once the caller is known to hold a server key."""
    settings = app_settings(request)
    require_server(request, settings)
    return settings
