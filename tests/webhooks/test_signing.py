"""Standard Webhooks signing: receivers using the reference library accept what we send."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from shared.webhooks.signing import signed_headers


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


BODY = '{"event":"order.paid","amount":1200,"note":"café"}'


def test_signature_verifies_with_the_reference_library() -> None:
    """Given a secret, when a body is signed now, then standardwebhooks verifies it and
    returns the parsed body."""
    secret = new_secret()

    headers = signed_headers("msg_1", BODY, [secret])

    assert Webhook(secret).verify(BODY, headers) == {"event": "order.paid", "amount": 1200, "note": "café"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")


def test_signature_matches_the_spec_computed_by_hand() -> None:
    """Given a fixed time, when signing, then the signature is base64(HMAC-SHA256(key,
    "id.timestamp.body")) as the Standard Webhooks spec defines it."""
    key = secrets.token_bytes(32)
    secret = "whsec_" + base64.b64encode(key).decode()
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    headers = signed_headers("msg_2", BODY, [secret], now=now)

    expected = base64.b64encode(
        hmac.new(key, f"msg_2.{int(now.timestamp())}.{BODY}".encode(), hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"] == f"v1,{expected}"


@pytest.mark.parametrize("verifying_secret_index", [0, 1])
def test_two_secrets_give_two_signatures_and_either_secret_verifies(verifying_secret_index: int) -> None:
    """Given a secret being rotated (old and new), when signing with both, then the header
    carries two signatures and a receiver holding either secret accepts the request."""
    pair = [new_secret(), new_secret()]

    headers = signed_headers("msg_3", BODY, pair)

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(pair[verifying_secret_index]).verify(BODY, headers)


def test_an_unrelated_secret_does_not_verify() -> None:
    """Given two signing secrets, when a receiver holds a third, then verification fails."""
    headers = signed_headers("msg_4", BODY, [new_secret(), new_secret()])

    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_a_changed_body_does_not_verify() -> None:
    """Given a signed body, when one character changes in transit, then verification fails."""
    secret = new_secret()
    headers = signed_headers("msg_5", BODY, [secret])

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("1200", "1201"), headers)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2030, 6, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2030, 6, 1, 7, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2030, 6, 1, 12, 0, 0),  # naive: taken as UTC
    ],
)
def test_the_same_instant_in_any_zone_signs_the_same(now: datetime) -> None:
    """Given the same instant written in different time zones, when signing, then timestamp
    and signature are identical (the library replaces the zone instead of converting)."""
    secret = new_secret()
    reference = signed_headers("msg_6", BODY, [secret], now=datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC))

    assert signed_headers("msg_6", BODY, [secret], now=now) == reference


@pytest.mark.parametrize("bad", [[], ["whsec_"], ["whsec_a"], ["whsec_!!!!"], [""]])
def test_missing_or_malformed_secrets_are_refused(bad: list[str]) -> None:
    """Given no secret or a malformed one, when signing, then ValueError says so."""
    with pytest.raises(ValueError):
        signed_headers("msg_7", BODY, bad)
