"""Hostile templates through ``/api/templates`` over real HTTP: refused when saved with the
part, line and reason; template bombs stopped at preview (422) and at save (their sample
data); and a preview never prints what the process holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from producer.gateway.app import create_app
from shared.config import Settings
from shared.templates.limits import MAX_TEMPLATE_TAGS
from shared.templates.partials_graph import MAX_PARTIAL_DEPTH
from shared.templates.syntax import MAX_BLOCK_DEPTH, MAX_TAGS
from tests.conftest import SERVER_KEY
from tests.gateway.server import LiveServer

NOTE = {"key": "note", "channel": "sms", "sms": "Hi {{name}}", "sampleData": {"name": "Ann"}}
BOMB = "{{#each a}}{{#each ../a}}{{#each ../../a}}{{#each ../../../a}}x{{/each}}{{/each}}{{/each}}{{/each}}"
SECRET = "env-secret-9f8e7d6c"


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[httpx.Client]:
    settings = make_settings(TEMPLATE_RENDER_TIMEOUT_MS="100", TEMPLATE_MAX_OUTPUT_BYTES="65536")
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


#: (what is hostile, body changes, part named, line named, words of the reason)
REFUSED: list[tuple[str, dict[str, Any], str, int, str]] = [
    ("dunder", {"sms": "Hi\n{{this.__class__.__mro__}}"}, "sms", 2, "not a variable name"),
    ("parent dunder", {"sms": "{{../__dict__}}"}, "sms", 1, "not a variable name"),
    ("lookup helper", {"sms": '{{lookup . "__globals__"}}'}, "sms", 1, "unknown helper 'lookup'"),
    ("path literal", {"sms": "{{[__builtins__]}}"}, "sms", 1, "path literals"),
    ("partial traversal", {"sms": "a\nb\n{{> ../../etc/passwd}}"}, "sms", 3, "plain name"),
    ("internal helper", {"sms": "{{helperMissing}}"}, "sms", 1, "reserved"),
    ("raw block", {"sms": "{{{{raw}}}}x{{{{/raw}}}}"}, "sms", 1, "raw blocks"),
    ("control character", {"sms": "Hi\n\n{{name}}\x1b[2J"}, "sms", 3, "U+001B"),
    ("deep", {"sms": "{{#if name}}" * (MAX_BLOCK_DEPTH + 1)}, "sms", 1, "nested deeper"),
    ("many tags", {"sms": "{{name}}\n" * (MAX_TAGS + 1)}, "sms", MAX_TAGS + 1, "tags"),
]


@pytest.mark.parametrize(("case", "changes", "part", "line", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_hostile_template_is_refused_when_saved(
    client: httpx.Client, case: str, changes: dict[str, Any], part: str, line: int, reason: str
) -> None:
    response = client.post("/api/templates", json={**NOTE, **changes})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_template"
    assert (error["details"][0]["part"], error["details"][0]["line"]) == (part, line)
    assert reason in error["details"][0]["message"]
    assert client.get("/api/templates/note").status_code == 404


def test_a_template_whose_sample_data_bombs_is_refused_when_saved(client: httpx.Client) -> None:
    response = client.post(
        "/api/templates", json={**NOTE, "sms": BOMB, "sampleData": {"a": list(range(200))}}
    )

    assert response.status_code == 400, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["part"] == "sampleData"
    assert "CPU time" in detail["message"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"a": list(range(200))}, "over 100 ms of CPU time"),
        ({"a": list(range(100)), "pad": "x" * 1000}, "over 65536 bytes"),
    ],
    ids=["cpu", "output"],
)
def test_a_preview_over_budget_answers_422_with_the_reason(
    client: httpx.Client, data: dict[str, Any], reason: str
) -> None:
    """Given a template of four nested loops (saved with harmless sample data), when a
    preview's data makes it a bomb (1.6 billion iterations, or output of 10 GB), then the
    preview answers 422 render_limit_exceeded naming the limit, in test time; small data
    still previews."""
    sms = BOMB if "pad" not in data else BOMB.replace("x", "{{@root.pad}}")
    assert (
        client.post(
            "/api/templates", json={**NOTE, "sms": sms, "sampleData": {"a": [1], "pad": "y"}}
        ).status_code
        == 201
    )

    response = client.post("/api/templates/note/preview", json={"data": data})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "render_limit_exceeded"
    assert reason in error["message"]
    small = client.post("/api/templates/note/preview", json={"data": {"a": [1, 2], "pad": "y"}})
    assert (small.status_code, len(small.json()["sms"])) == (200, 2**4)


def test_a_preview_never_prints_the_process_environment(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a template naming ``format`` on a string (allowed: it is an ordinary name), when
    the preview's data is a format string walking to ``os.environ``, then nothing of the
    environment comes back, and a data value holding template syntax is printed as text."""
    monkeypatch.setenv("KAI_TEST_SECRET", SECRET)
    walk = "{0.__init__.__globals__[sys].modules[os].environ[KAI_TEST_SECRET]}"
    body = {**NOTE, "sms": "{{name}}|{{name.format}}|{{#with name}}{{format_map}}{{/with}}"}
    assert client.post("/api/templates", json=body).status_code == 201

    response = client.post("/api/templates/note/preview", json={"data": {"name": walk}})
    literal = client.post("/api/templates/note/preview", json={"data": {"name": "{{> x}}{{secret}}"}})

    assert response.status_code == 200, response.text
    assert response.json()["sms"] == f"{walk}||"
    assert SECRET not in response.text
    assert literal.json()["sms"] == "{{> x}}{{secret}}||"


#: 270 KB of webhook payload: 54 strings of 1,000 tags, each string within the per-part
#: limits, which once cost 36 s of CPU to save and as much again in every worker.
SPREAD_PAYLOAD = {f"field{i}": "{{a}}" * MAX_TAGS for i in range(54)}


def test_a_template_too_large_as_a_whole_is_refused_with_422(
    make_settings: Callable[..., Settings],
) -> None:
    """Given a webhook template whose 54 payload strings have 1,000 tags each (a body the
    gateway accepts once its size cap allows it), when it is saved, then it is refused with
    422 template_too_large counting the tags of the whole template, and nothing is stored."""
    settings = make_settings(MAX_PAYLOAD_BYTES=str(1024 * 1024))
    body = {"key": "wide", "channel": "webhook", "payload": SPREAD_PAYLOAD}
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {SERVER_KEY}"

        response = client.post("/api/templates", json=body)

        assert response.status_code == 422, response.text[:500]
        error = response.json()["error"]
        assert error["code"] == "template_too_large"
        assert f"{54 * MAX_TAGS} {{{{…}}}} tags" in error["message"]
        assert error["details"][0]["part"] == "payload"
        assert client.get("/api/templates/wide").status_code == 404


def partial(client: httpx.Client, key: str, text: str, *, method: str = "POST") -> httpx.Response:
    body = {"key": key, "channel": "partial", "text": text}
    if method == "POST":
        return client.post("/api/templates", json=body)
    return client.put(f"/api/templates/{key}", json=body)


def test_a_partial_that_would_close_a_cycle_is_refused_with_the_cycle(client: httpx.Client) -> None:
    """Given partial ``a`` including ``b`` and a template using ``a``, when ``b`` is saved
    including ``a``, then the save answers 422 naming the cycle, ``b`` keeps its version,
    and the template still renders."""
    assert partial(client, "b", "B").status_code == 201
    assert partial(client, "a", "A{{> b}}").status_code == 201
    assert client.post("/api/templates", json={**NOTE, "sms": "Hi {{name}} {{> a}}"}).status_code == 201

    response = partial(client, "b", "B{{> a}}", method="PUT")

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "partial_cycle"
    assert "b → a → b" in error["message"]
    assert error["details"][0]["part"] == "text"
    assert client.get("/api/templates/b").json()["items"][0]["version"] == 1
    preview = client.post("/api/templates/note/preview", json={})
    assert (preview.status_code, preview.json().get("sms")) == (200, "Hi Ann AB")


def test_partials_nested_too_deep_are_refused_with_the_chain(client: httpx.Client) -> None:
    """Given partials p1 → p2 → … → p8 (as deep as partials may go), when p9 is saved and p8
    is then changed to include it, then that save answers 422 naming the chain from its top."""
    assert partial(client, "p9", "9").status_code == 201
    for level in range(MAX_PARTIAL_DEPTH, 0, -1):
        included = "{{> p" + str(level + 1) + "}}" if level < MAX_PARTIAL_DEPTH else ""
        assert partial(client, f"p{level}", f"{level}{included}").status_code == 201, level

    response = partial(client, f"p{MAX_PARTIAL_DEPTH}", f"{MAX_PARTIAL_DEPTH}{{{{> p9}}}}", method="PUT")

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "partials_too_deep"
    chain = " → ".join(f"p{n}" for n in range(1, MAX_PARTIAL_DEPTH + 2))
    assert chain in error["message"]


def test_all_partials_together_are_weighed_as_one_template(client: httpx.Client) -> None:
    """Every process compiles every current partial (twice: for text and for HTML), so
    given one partial of 510 tags, a second one as large is refused with 422, and the
    first can still be replaced by a version as large."""
    half = "x" + "{{a}}" * (MAX_TEMPLATE_TAGS // 4 + 10)
    assert partial(client, "one", half).status_code == 201

    response = partial(client, "two", half)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "template_too_large"
    assert "all current partials together" in error["message"]
    assert client.get("/api/templates/two").status_code == 404
    assert partial(client, "one", half + "!", method="PUT").status_code == 200


def test_a_partial_still_included_cannot_be_retired(client: httpx.Client) -> None:
    """Retiring a partial that a current partial or template includes would make their
    messages fail at send time: the delete answers 409 naming who includes it, and once
    nothing does, it is retired."""
    assert partial(client, "logo", "[logo]").status_code == 201
    assert partial(client, "header", "{{~> logo~}} Hello").status_code == 201
    assert client.post("/api/templates", json={**NOTE, "sms": "Hi {{name}}{{> logo }}"}).status_code == 201

    response = client.delete("/api/templates/logo")

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "template_in_use"
    assert "partial 'header'" in error["message"]
    assert "sms template 'note'" in error["message"]
    assert client.get("/api/templates/logo").status_code == 200
    assert client.delete("/api/templates/header").status_code == 204
    assert client.delete("/api/templates/note").status_code == 204
    assert client.delete("/api/templates/logo").status_code == 204
