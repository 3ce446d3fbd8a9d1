"""A local stand-in for Twilio's Messages API, speaking its wire format.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with form fields ``To``, ``From`` and
``Body`` and HTTP Basic auth (account SID and auth token) answers ``201`` with a message
resource shaped like Twilio's, or Twilio's error document when told to fail (``fail_next``) or
when the credentials are wrong (401, code 20003). Point the SDK at ``base_url``.

``report`` then does what Twilio does as the message travels: posts a status callback to the
message's ``StatusCallback`` URL, the form Twilio sends, signed the way Twilio signs it
(``X-Twilio-Signature``, computed by the ``twilio`` package with the auth token).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import httpx
from twilio.request_validator import RequestValidator

from tests.sinks.faults import take_next
from tests.sinks.http_server import HttpSink, QuietServer

API_VERSION = "2010-04-01"
ERROR_DOCS = "https://www.twilio.com/docs/errors/"


@dataclass
class _Fault:
    status: int
    code: int
    message: str
    remaining: int | None  # None: forever


@dataclass(frozen=True)
class SmsRequest:
    """One Messages.json POST the sink accepted."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    form: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str) -> None:
        self._answer(
            status, {"code": code, "message": message, "more_info": f"{ERROR_DOCS}{code}", "status": status}
        )

    def do_POST(self) -> None:
        sink: TwilioSink = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 4 or (parts[0], parts[1], parts[3]) != (API_VERSION, "Accounts", "Messages.json"):
            self._error(404, 20404, f"The requested resource {self.path} was not found")
            return
        account_sid = parts[2]
        if not sink._authorized(self.headers.get("Authorization"), account_sid):
            self._error(401, 20003, "Authenticate")
            return
        if sink.delay:
            self.server.stopping.wait(sink.delay)
        fault = sink._take_fault()
        if fault is not None:
            self._error(fault.status, fault.code, fault.message)
            return
        form = {key: values[-1] for key, values in parse_qs(raw.decode(), keep_blank_values=True).items()}
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            self._error(400, 21604, "A 'To' phone number is required.")
            return
        if not body:
            self._error(400, 21602, "Message body is required.")
            return
        message_sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message_sid}.json"
        sink._record(SmsRequest(message_sid, account_sid, to, from_, body, form))
        self._answer(
            201,
            {
                "account_sid": account_sid,
                "api_version": API_VERSION,
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": from_,
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": str(max(1, -(-len(body) // 160))),
                "price": None,
                "price_unit": "USD",
                "sid": message_sid,
                "status": "queued",
                "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
                "to": to,
                "uri": uri,
            },
        )


class TwilioSink(HttpSink):
    """The Messages API on 127.0.0.1. Use as a context manager or call start()/stop()."""

    handler = _Handler

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: Seconds each accepted request waits before answering (timeout tests).
        self.delay = 0.0
        self._cond = threading.Condition()
        self._requests: list[SmsRequest] = []
        self._faults: list[_Fault] = []
        #: Requests refused for bad credentials.
        self.unauthorized = 0

    def fail_next(
        self, status: int = 500, code: int = 20500, message: str = "Internal Server Error", *, times: int = 1
    ) -> None:
        """Answer the next ``times`` authorized requests with Twilio's error document."""
        with self._cond:
            self._faults.append(_Fault(status, code, message, times))

    def fail_always(self, status: int, code: int, message: str = "refused by test") -> None:
        with self._cond:
            self._faults.append(_Fault(status, code, message, None))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    @property
    def requests(self) -> list[SmsRequest]:
        with self._cond:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SmsRequest]:
        """Block until ``count`` messages were accepted; AssertionError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= count, timeout=timeout):
                got = len(self._requests)
                raise AssertionError(f"Twilio sink got {got} of {count} messages in {timeout}s")
            return list(self._requests)

    def report(
        self,
        request: SmsRequest,
        status: str,
        *,
        error_code: int | None = None,
        signed_with: str | None = None,
        tamper: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Post ``status`` for ``request`` to its StatusCallback as Twilio would, signed with
        the auth token (or ``signed_with``); ``tamper`` changes fields after signing."""
        url = request.form["StatusCallback"]
        form = {
            "AccountSid": request.account_sid,
            "ApiVersion": API_VERSION,
            "From": request.from_,
            "To": request.to,
            "MessageSid": request.sid,
            "SmsSid": request.sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        signature = RequestValidator(signed_with or self.auth_token).compute_signature(url, form)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        return httpx.post(url, data={**form, **(tamper or {})}, headers=headers, timeout=10)

    def _authorized(self, header: str | None, account_sid: str) -> bool:
        ok = False
        if header and header.startswith("Basic ") and account_sid == self.account_sid:
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user = password = ""
            ok = secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
                password, self.auth_token
            )
        if not ok:
            with self._cond:
                self.unauthorized += 1
        return ok

    def _take_fault(self) -> _Fault | None:
        with self._cond:
            return take_next(self._faults)

    def _record(self, request: SmsRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
