"""``POST /receipts/twilio/{message_id}``: Twilio's status callbacks, which say what became of
an SMS after Twilio accepted it (:mod:`producer.receipts`).

Each SMS is sent with this URL under ``PUBLIC_BASE_URL`` as its ``StatusCallback``. The
endpoint is public (Twilio holds no key of ours), so a request counts only when its
``X-Twilio-Signature`` is Twilio's: an HMAC with the auth token of the account it names
(``TWILIO_AUTH_TOKEN``, or a failover account's from ``SMS_FALLBACK_PROVIDERS``) over the URL
Twilio called and the form it posted, checked by the ``twilio`` package's own validator
against the public URL (the gateway may sit behind a proxy that rewrote the host). Anything
else is 403 and changes nothing. A replayed callback carries a valid signature; it is
recorded once.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from producer import receipts
from producer.gateway.auth import app_settings
from producer.gateway.bodies import read_form
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from producer.receipts import Receipt, ReceiptType
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from shared.errors import NotFound

#: A status callback is a dozen short fields.
MAX_CALLBACK_BYTES = 8 * 1024

#: Twilio's ``MessageStatus`` words, in our vocabulary; the others (``queued``, ``sending``,
#: ``accepted``, ``scheduled``, ``canceled``) say nothing a status does not already say.
TWILIO_STATUSES: dict[str, ReceiptType] = {
    "sent": "accepted",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "read": "read",
}


@operation(
    "POST",
    "Twilio's status callback for an SMS",
    auth=Auth.PUBLIC,
    replies=[Reply(204, "Recorded (or heard before, or a status that says nothing new).", media_type=None)],
    errors=(400, 403, 404, 413, 415),
    description="Called by Twilio, not by you: every SMS is sent with this URL (under "
    "`PUBLIC_BASE_URL`) as its `StatusCallback`. The form Twilio posts (`MessageSid`, "
    "`MessageStatus`, `ErrorCode`, `AccountSid` …) must carry a valid `X-Twilio-Signature` "
    "for the auth token of the account it names (`TWILIO_AUTH_TOKEN`, or a failover account's "
    "from `SMS_FALLBACK_PROVIDERS`), else 403. `delivered` moves a `sent` message to `delivered`; "
    "`undelivered` and `failed` move it to `failed` with `errorCode` `twilio_<ErrorCode>`; "
    "each is kept in the message's `receipts`. 404 when `PUBLIC_BASE_URL` or "
    "`TWILIO_AUTH_TOKEN` is not set, or for a message that is not an SMS.",
)
async def twilio_status(request: Request) -> Response:
    settings = app_settings(request)
    accounts, base = settings.twilio_accounts, settings.public_base_url
    if not accounts or not base:
        raise ApiError(404, "not_found", "Twilio receipts need PUBLIC_BASE_URL and TWILIO_AUTH_TOKEN")
    form = await read_form(request, MAX_CALLBACK_BYTES)
    account = next((a for a in accounts if a.account_sid == form.get("AccountSid")), None)
    if account is None:
        raise ApiError(403, "forbidden", "the callback is for a Twilio account not configured here")
    called = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    signature = request.headers.get("x-twilio-signature", "")
    if not RequestValidator(account.auth_token).validate(called, form, signature):
        raise ApiError(403, "forbidden", "X-Twilio-Signature does not match this request")
    receipt = twilio_receipt(request.path_params["message_id"], form, provider=account.name)
    forwarded = await run_in_threadpool(_record, settings, request.path_params["message_id"], receipt)
    await receipts.publish_forwarded(settings, forwarded)
    return Response(status_code=204)


def twilio_receipt(message_id: str, form: dict[str, str], *, provider: str = "twilio") -> Receipt | None:
    """The receipt a callback's form makes, or None when its status says nothing new."""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    kind = TWILIO_STATUSES.get(status)
    if kind is None:
        return None
    error = form.get("ErrorCode") or None
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    return Receipt(
        message_id=message_id,
        type=kind,
        provider=provider,
        code=f"{status} {error}" if error else status,
        dedupe_key=f"twilio:{sid}:{status}",
        detail=f"Twilio error {error}" if error else None,
        error_code=(f"twilio_{error}" if error else f"twilio_{status}") if kind == "undelivered" else None,
    )


def _record(settings: Settings, message_id: str, receipt: Receipt | None) -> list[str]:
    """Record the receipt; the ids of the webhook messages that forward it."""
    # As the system: the callback acts for no user, and finds the message by its id alone.
    with system_scope(settings.database_url) as session:
        message = session.execute(
            select(NotificationLog.user_id, NotificationLog.channel).where(NotificationLog.id == message_id)
        ).one_or_none()
        if message is None or message.channel != Channel.SMS.value:
            raise NotFound(f"no SMS with id {message_id}")
        if receipt is None:
            return []
        return receipts.record(session, settings, receipt, receipts.Of(message.user_id, message.channel))


routes = [Route("/receipts/twilio/{message_id:str}", twilio_status, methods=["POST"])]
