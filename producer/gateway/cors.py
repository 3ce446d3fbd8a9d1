"""Cross-origin access for browsers, from ``CORS_ALLOWED_ORIGINS``.

Closed by default: with no origin configured the middleware is not installed at all, so no
response carries an ``Access-Control-*`` header. Credentials travel in the
``Authorization`` header, never in cookies, so credentialed CORS stays off.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from shared.config import Settings

ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-User-Id", "Last-Event-ID"]
#: Response headers a browser script may read: when to retry, and the rate limit's state.
EXPOSED_HEADERS = [
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
]
#: How long a browser may reuse a preflight answer, in seconds.
PREFLIGHT_MAX_AGE_SECONDS = 600


def middleware(settings: Settings) -> list[Middleware]:
    if not settings.cors_allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allowed_origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )
    ]
