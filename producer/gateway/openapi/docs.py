"""``GET /docs``: interactive API documentation, Swagger UI rendering ``/openapi.json``.

Swagger UI's script and stylesheet come from the installed ``swagger-ui-py`` package and
are served by the gateway itself, so the page loads nothing from the internet. The page
starts Swagger UI from a script file of its own (``docs/docs.js``) rather than an inline
script, so its content security policy allows scripts from this origin only; "Try it out"
calls this gateway and nothing else.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from importlib.util import find_spec
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from producer.gateway.openapi.operation import Auth, Reply, operation

STATIC = resources.files("producer.gateway") / "static"


def _swagger_ui_assets() -> Path:
    # Found without importing the package, whose __init__ loads Jinja2 and PyYAML for
    # framework integrations the gateway does not use.
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed: pip install swagger-ui-py")
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (static / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"no Swagger UI assets in {static}: reinstall swagger-ui-py")
    return static


#: Scripts and styles from this origin only, nothing inline; Swagger UI draws its icons from
#: ``data:`` images, and "Try it out" calls this origin.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page(path: str, source: Traversable, media_type: str, name: str, what: str) -> Route:
    # Read on first use, not at import: Swagger UI's script alone is 1.5 MB.
    body: bytes | None = None

    @operation(
        "GET",
        f"The API documentation page: {what}",
        auth=Auth.PUBLIC,
        replies=[Reply(200, "A page or static asset of the API documentation.", media_type=media_type)],
    )
    async def serve(_request: Request) -> Response:
        nonlocal body
        if body is None:
            body = source.read_bytes()
        return Response(body, media_type=media_type, headers=HEADERS)

    serve.__name__ = name
    return Route(path, serve, methods=["GET"])


def build_routes() -> list[Route]:
    vendor = _swagger_ui_assets()
    return [
        _page("/docs", STATIC / "docs.html", "text/html", "docs_page", "the page"),
        _page("/docs/docs.js", STATIC / "docs.js", "text/javascript", "docs_js", "its script"),
        _page(
            "/docs/swagger-ui-bundle.js",
            vendor / "swagger-ui-bundle.js",
            "text/javascript",
            "docs_swagger_ui_js",
            "Swagger UI",
        ),
        _page("/docs/swagger-ui.css", vendor / "swagger-ui.css", "text/css", "docs_css", "its styles"),
        _page("/docs/favicon.png", vendor / "favicon-32x32.png", "image/png", "docs_favicon", "its icon"),
    ]


routes = build_routes()
