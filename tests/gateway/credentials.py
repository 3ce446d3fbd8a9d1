"""Credentials of every kind the gateway must tell apart, minted for tests: user tokens with
any claims, secret and algorithm, and the forgeries an attacker would try."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import USER_TOKEN_SECRET

#: Lifetime of the tokens minted here, in seconds.
LIFETIME_SECONDS = 3600

#: A secret the gateway has never been given (long enough for HS256, so PyJWT signs quietly).
FOREIGN_SECRET = "a-secret-the-gateway-has-never-seen-0123456789"


def claims_for(user_id: str, **extra: Any) -> dict[str, Any]:
    """``sub`` and an ``exp`` an hour ahead, plus ``extra`` (a value of None drops the claim)."""
    claims: dict[str, Any] = {"sub": user_id, "exp": int(time.time()) + LIFETIME_SECONDS, **extra}
    return {name: value for name, value in claims.items() if value is not None}


def user_token(user_id: str, *, secret: str = USER_TOKEN_SECRET, **extra: Any) -> str:
    return jwt.encode(claims_for(user_id, **extra), secret, algorithm="HS256")


def expired_token(user_id: str, **extra: Any) -> str:
    """Expired an hour ago: well beyond any clock-skew leeway."""
    return user_token(user_id, exp=int(time.time()) - LIFETIME_SECONDS, **extra)


def unsigned_token(user_id: str, **extra: Any) -> str:
    """``alg: none`` with an empty signature, built by hand as an attacker would."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims_for(user_id, **extra))}."


def rsa_token(user_id: str, **extra: Any) -> str:
    """Validly signed, but with RS256: the gateway accepts HS256 only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims_for(user_id, **extra), key, algorithm="RS256")


def hs512_token(user_id: str, **extra: Any) -> str:
    """Signed with the right secret, but with HS512: the gateway accepts HS256 only."""
    with warnings.catch_warnings():
        # PyJWT warns that the test secret is short for SHA-512; the token only has to exist.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims_for(user_id, **extra), USER_TOKEN_SECRET, algorithm="HS512")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}
