"""The gateway's rate limits: a budget per endpoint group and credential, checked where the
credential is known (:mod:`producer.gateway.auth`), once per request.

Groups: ``send`` (POST /api/messages/*, /api/notifications/test), ``events`` (POST
/api/events), ``read`` (the inbox, stream connects, the message log, message and event
status) and ``manage`` (templates, rules, preferences, webhook endpoints, contacts). A
budget belongs to one credential: on server endpoints a server key's (known by a
fingerprint, never by the key itself); on endpoints that act for a user, the user's: a
server key naming it with ``X-User-Id`` has one budget per user, so one user cannot spend
another's, and a user token its ``sub``'s. A server key acting for a user is charged its own
budget of the group as well, so naming a new user on every call never lifts the key's
ceiling.

Every limited response carries the IETF ``RateLimit-Limit``, ``RateLimit-Remaining``,
``RateLimit-Reset`` (seconds) and ``RateLimit-Policy`` headers
(https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/); over the budget the
answer is 429 ``rate_limited`` with ``Retry-After``, before the body is read, so nothing is
enqueued. With Redis down, requests pass unchecked (:mod:`shared.ratelimit.failopen`).

The check is one Redis round trip (a Lua script) made on the event loop, as the
authentication it follows is: well under a millisecond next to Redis. Its socket timeouts
and the fail-open pause bound what an unreachable Redis can cost the loop.
"""

from __future__ import annotations

import enum
import hashlib

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer.gateway.errors import ApiError
from shared import metrics
from shared.config import Settings
from shared.logging import get_logger
from shared.ratelimit import Decision, FailOpen, build_rate_limiter
from shared.ratelimit_settings import Limit

log = get_logger(__name__)

#: Where a request's decision waits for :class:`RateLimitHeaders` (an ASGI scope extension).
SCOPE_KEY = "kai.rate_limit"

#: Separates credential fingerprints from any other SHA-256 of the same text.
_FINGERPRINT_LABEL = b"kai-gateway-credential\x00"


class Group(enum.Enum):
    SEND = "send"
    EVENTS = "events"
    READ = "read"
    MANAGE = "manage"


#: (method or None for any, path, whether ``path`` is a prefix, group): the first match wins;
#: anything else under /api is ``manage``.
RULES: tuple[tuple[str | None, str, bool, Group], ...] = (
    ("POST", "/api/messages/", True, Group.SEND),
    ("POST", "/api/notifications/test", False, Group.SEND),
    ("POST", "/api/events", False, Group.EVENTS),
    (None, "/api/notifications/preferences", False, Group.MANAGE),
    (None, "/api/notifications", True, Group.READ),
    ("GET", "/api/messages", False, Group.READ),
    ("GET", "/api/messages/", True, Group.READ),
    ("GET", "/api/events/", True, Group.READ),
)


def group_of(method: str, path: str) -> Group:
    for rule_method, rule_path, prefix, group in RULES:
        if rule_method not in (None, method):
            continue
        if path == rule_path or (prefix and path.startswith(rule_path)):
            return group
    return Group.MANAGE


def fingerprint(server_key: str) -> str:
    """Names a server key in Redis and logs without revealing it."""
    return hashlib.sha256(_FINGERPRINT_LABEL + server_key.encode()).hexdigest()[:16]


def _user_part(user_id: str) -> str:
    # Hashed only to bound the key's length: X-User-Id is whatever the caller sends.
    return hashlib.sha256(user_id.encode()).hexdigest()[:24]


class GatewayLimits:
    """The budgets of one gateway app, in Redis (REDIS_URL) or in this process."""

    def __init__(self, settings: Settings) -> None:
        config = settings.rate_limits
        budgets = {
            Group.SEND: config.send,
            Group.EVENTS: config.events,
            Group.READ: config.read,
            Group.MANAGE: config.manage,
        }
        self.budgets: dict[Group, Limit] = (
            {group: limit for group, limit in budgets.items() if limit is not None} if config.enabled else {}
        )
        self.guard = FailOpen(build_rate_limiter(settings.redis_url), "gateway") if self.budgets else None

    def check(
        self, group: Group, key_fingerprint: str | None, user_id: str | None, cost: int = 1
    ) -> Decision | None:
        """Spend ``cost`` units (one per request, one per message of a batch) of the caller's
        budget in ``group``; None when the group is not limited (or Redis did not answer)."""
        limit = self.budgets.get(group)
        if limit is None or self.guard is None:
            return None
        who = []
        if key_fingerprint is not None:
            who.append(f"k:{key_fingerprint}")
        if user_id is not None:
            who.append(f"u:{_user_part(user_id)}")
        return self.guard.hit(f"gw:{group.value}:{':'.join(who)}", limit.count, limit.window_ms, cost)

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()


def headers(decision: Decision, window_ms: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_seconds),
        "RateLimit-Policy": f"{decision.limit};w={max(1, window_ms // 1000)}",
    }


def charge(request: Request, *, key_fingerprint: str | None, user_id: str | None) -> None:
    """Spend one request of the budget of a server key (by its fingerprint), of a user it
    acts for, or of a user token's user; or refuse with 429. A request is charged once,
    however many times its handler asks who the caller is."""
    if SCOPE_KEY in request.scope:
        return
    user_budget = _spend(request, key_fingerprint, user_id, 1)
    if key_fingerprint is not None and user_id is not None:
        # X-User-Id is whatever the caller sends: the key's own budget bounds them all.
        key_budget = _spend(request, key_fingerprint, None, 1)
        request.scope[SCOPE_KEY] = _tighter(user_budget, key_budget)


def charge_more(request: Request, *, key_fingerprint: str | None, units: int) -> None:
    """Spend ``units`` more of a server key's budget for a request that turned out to carry
    that many more messages (a batch), or refuse the whole request with 429."""
    if units > 0:
        _spend(request, key_fingerprint, None, units)


def _tighter(first: dict[str, str] | None, second: dict[str, str] | None) -> dict[str, str] | None:
    """Of two budgets' headers, those of the one with less left (what the caller can spend)."""
    if first is None or second is None:
        return first or second
    return first if int(first["RateLimit-Remaining"]) <= int(second["RateLimit-Remaining"]) else second


def _spend(
    request: Request, key_fingerprint: str | None, user_id: str | None, cost: int
) -> dict[str, str] | None:
    """The budget's ``RateLimit-*`` headers once ``cost`` is spent (None when unlimited or
    unchecked); 429 when over it."""
    limits: GatewayLimits = request.app.state.rate_limits
    group = group_of(request.method, request.url.path)
    decision = limits.check(group, key_fingerprint, user_id, cost)
    if decision is None:
        request.scope[SCOPE_KEY] = None
        return None
    answer = headers(decision, limits.budgets[group].window_ms)
    request.scope[SCOPE_KEY] = answer
    if decision.allowed:
        return answer
    metrics.GATEWAY_RATE_LIMITED.labels(group.value).inc()
    log.info(
        "gateway.rate_limited",
        group=group.value,
        credential=key_fingerprint or "user_token",
        user_id=user_id,
        retry_after_s=decision.reset_seconds,
    )
    raise ApiError(
        429,
        "rate_limited",
        f"rate limit of {decision.limit} {group.value} requests per "
        f"{limits.budgets[group].window_ms // 1000} s reached; retry in {decision.reset_seconds} s",
        headers={**answer, "Retry-After": str(decision.reset_seconds)},
    )


class RateLimitHeaders:
    """Adds a request's ``RateLimit-*`` headers to its response, whatever the response is
    (success, validation error, 429). Reads what :func:`charge` left; parses nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            answer = scope.get(SCOPE_KEY)
            if message["type"] == "http.response.start" and answer:
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in answer.items()
                    if name.lower().encode() not in present
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
