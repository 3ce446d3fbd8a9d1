"""``GET /console``: the operator console, a page (plain HTML, CSS and JavaScript, no build
step) over this gateway's own API, signed in with a server key that stays in the browser
tab's session storage and travels only in the ``Authorization`` header: there is no cookie
for another site to ride, so no request forgery to defend against.

Its policy allows its own script and calls to this origin only. Inline styles are allowed
for one reason: a template's email preview is rendered in a sandboxed frame (no script, no
same-origin access) whose document inherits this policy, and email HTML is styled inline.
Images load only from this origin or ``data:``, so a preview fetches nothing from the
internet. Nothing may frame the console.
"""

from __future__ import annotations

from starlette.routing import Route

from producer.gateway.static_assets import asset

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _asset(name: str, media_type: str, path: str) -> Route:
    return asset(
        name,
        media_type,
        path,
        prefix="console",
        summary=f"The operator console: {name}",
        what="A static asset of the console (it signs in with a server key).",
        policy=lambda _settings: POLICY,
    )


routes = [
    _asset("console.html", "text/html; charset=utf-8", "/console"),
    _asset("console.js", "text/javascript", "/console.js"),
    _asset("console.css", "text/css", "/console.css"),
]
