"""Standard Webhooks signatures for outgoing webhook requests.

Every webhook we send carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
headers as the Standard Webhooks spec defines them, so receivers can verify requests with any
of that spec's libraries. The signature header may list several ``v1,<base64>`` values: one per
secret, which lets an operator rotate a secret while receivers still hold the old one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

#: Prefix of a Standard Webhooks secret (the rest is base64 key material).
SECRET_PREFIX = "whsec_"

#: Header names defined by the Standard Webhooks spec.
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def _as_utc(moment: datetime) -> datetime:
    # Webhook.sign() *replaces* the tzinfo with UTC instead of converting, so an aware time in
    # another zone would be signed as the wrong instant; convert first. Naive times are taken
    # as UTC, which is what sign() assumes too.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def signed_headers(
    message_id: str, body: str, secrets: Sequence[str], now: datetime | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent as message ``message_id``.

    ``body`` must be exactly the text that goes on the wire (the signature covers it byte for
    byte once UTF-8 encoded). ``message_id`` should stay the same across retries so receivers
    can drop duplicates. Raises ValueError when no secret is given or a secret is malformed.
    """
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    moment = _as_utc(now or datetime.now(UTC))
    signatures = []
    for secret in secrets:
        try:
            signer = Webhook(secret)
        except Exception as exc:  # binascii.Error, EmptyWebhookSecretError, RuntimeError
            raise ValueError(f"malformed webhook secret: {type(exc).__name__}") from exc
        signatures.append(signer.sign(message_id, moment, body))
    return {
        ID_HEADER: message_id,
        # sign() floors the timestamp; the header must carry the same second.
        TIMESTAMP_HEADER: str(math.floor(moment.timestamp())),
        SIGNATURE_HEADER: " ".join(signatures),
    }
