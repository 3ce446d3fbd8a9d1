"""The Teams provider against a local peer that checks messages as Teams' webhooks do."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.config import Settings
from shared.errors import DeliveryError, PermanentDeliveryError, TargetGone, TemporaryDeliveryError
from shared.payloads import ChatPayload
from tests.sinks.teams_peer import ADAPTIVE_CARD, CONNECTOR, MAX_MESSAGE_BYTES, WORKFLOWS, TeamsPeer
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.teams import CARD_SCHEMA, TeamsProvider, classify, scrub

pytestmark = pytest.mark.anyio

CARD: dict[str, Any] = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "Deploy finished", "weight": "Bolder", "size": "Medium"},
        {
            "type": "FactSet",
            "facts": [{"title": "Service", "value": "api"}, {"title": "Version", "value": "2.3.1"}],
        },
        {
            "type": "ColumnSet",
            "columns": [{"type": "Column", "items": [{"type": "Image", "url": "https://example.com/a.png"}]}],
        },
    ],
    "actions": [
        {"type": "Action.OpenUrl", "title": "Open", "url": "https://example.com/deploys/42"},
        {"type": "Action.ShowCard", "title": "More", "card": {"type": "AdaptiveCard", "body": []}},
    ],
}


def teams(
    url: str | None, text: str = "Deploy finished ✓", card: dict[str, Any] | None = None
) -> Outgoing[ChatPayload]:
    return outgoing(ChatPayload(service="teams", text=text, webhook_url=url, card=card))


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def secrets_of(url: str) -> list[str]:
    """The parts of a webhook URL that are its credential: a Workflows ``sig``, the path."""
    parts = urlsplit(url)
    return [parts.path, *parse_qs(parts.query).get("sig", [])]


def assert_secret_kept(error: BaseException, url: str) -> None:
    """The webhook URL is in neither the error nor what it chains."""
    seen: BaseException | None = error
    while seen is not None:
        assert not any(secret in str(seen) for secret in secrets_of(url))
        seen = seen.__cause__ or seen.__context__


@pytest.fixture(scope="module")
def running_peer() -> Iterator[TeamsPeer]:
    with TeamsPeer() as running:
        yield running


@pytest.fixture
def peer(running_peer: TeamsPeer) -> TeamsPeer:
    """One peer for the module, forgetting everything between tests."""
    running_peer.reset()
    return running_peer


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator[Callable[..., TeamsProvider]]:
    made: list[TeamsProvider] = []

    def make(**env: str) -> TeamsProvider:
        settings = Settings.from_env(
            {
                "CHAT_TIMEOUT": "2000",
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                "KAI_VAR_DIR": str(tmp_path),
                **env,
            }
        )
        provider = TeamsProvider(settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., TeamsProvider]) -> TeamsProvider:
    return make_provider()


async def failure_of(provider: TeamsProvider, url: str, **kwargs: Any) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(teams(url, **kwargs))
    assert_secret_kept(caught.value, url)
    return caught.value


async def test_text_becomes_an_adaptive_card_posted_to_a_workflow(
    peer: TeamsPeer, provider: TeamsProvider
) -> None:
    """Given text and no card, when sent to a Workflows URL, then Teams gets a message with
    one Adaptive Card 1.4 of a wrapping TextBlock, and the 202 is accepted (not yet shown)."""
    result = await provider.send(teams(peer.new_webhook(WORKFLOWS), "Deploy finished ✓\nall green"))

    (post,) = peer.wait_for(1)
    assert post.message["type"] == "message"
    (attachment,) = post.message["attachments"]
    assert attachment["contentType"] == ADAPTIVE_CARD and attachment["contentUrl"] is None
    assert post.card == {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": "Deploy finished ✓\nall green", "wrap": True}],
    }
    assert post.headers["content-type"] == "application/json"
    assert (result.provider_message_id, result.delivered) == ("202", False)


async def test_a_connectors_1_is_delivered(peer: TeamsPeer, provider: TeamsProvider) -> None:
    """Given a legacy connector, which answers 200 ``1`` once the card is in the channel,
    then the message counts as delivered."""
    result = await provider.send(teams(peer.new_webhook(CONNECTOR)))

    assert len(peer.wait_for(1)) == 1
    assert (result.provider_message_id, result.delivered) == ("200", True)


async def test_a_given_card_is_passed_through(peer: TeamsPeer, provider: TeamsProvider) -> None:
    await provider.send(teams(peer.new_webhook(), text="ignored", card=CARD))

    (post,) = peer.wait_for(1)
    assert post.card == CARD


@pytest.mark.parametrize(
    "card",
    [
        {"version": "1.4", "body": []},
        {"type": "MessageCard", "version": "1.4"},
        {"type": "AdaptiveCard", "body": []},
        {"type": "AdaptiveCard", "version": ""},
    ],
)
async def test_an_invalid_card_is_refused_before_sending(
    peer: TeamsPeer, provider: TeamsProvider, card: dict[str, Any]
) -> None:
    error = await failure_of(provider, peer.new_webhook(), card=card)

    assert type(error) is PermanentDeliveryError and error.code == "teams_invalid_card"
    assert peer.request_count == 0


async def test_no_card_and_no_text_is_refused_before_sending(
    peer: TeamsPeer, provider: TeamsProvider
) -> None:
    error = await failure_of(provider, peer.new_webhook(), text="")

    assert type(error) is PermanentDeliveryError and error.code == "teams_no_text"
    assert peer.request_count == 0


async def test_no_webhook_url_is_refused(provider: TeamsProvider) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(teams(None))

    assert caught.value.code == "chat_invalid"


@pytest.mark.parametrize("style", [WORKFLOWS, CONNECTOR])
@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ({**CARD, "version": "2.0"}, "version"),
        ({**CARD, "body": [{"type": "Carousel"}]}, "Carousel"),
        ({**CARD, "actions": [{"type": "Action.Submit", "title": "Go"}]}, "Action.Submit"),
        ({**CARD, "body": [{"type": "FactSet", "facts": [{"title": "x"}]}]}, "facts[0]"),
    ],
)
async def test_a_card_teams_refuses_fails_permanently_with_its_reason(
    peer: TeamsPeer, provider: TeamsProvider, style: str, card: dict[str, Any], reason: str
) -> None:
    error = await failure_of(provider, peer.new_webhook(style), card=card)

    assert type(error) is PermanentDeliveryError and error.code == "teams_http_400"
    assert reason in error.message


async def test_a_card_over_28_kb_is_too_large(peer: TeamsPeer, provider: TeamsProvider) -> None:
    error = await failure_of(provider, peer.new_webhook(), text="x" * MAX_MESSAGE_BYTES)

    assert type(error) is PermanentDeliveryError and error.code == "chat_too_large"


@pytest.mark.parametrize("status", [404, 410])
@pytest.mark.parametrize("style", [WORKFLOWS, CONNECTOR])
async def test_a_removed_webhook_is_gone(
    peer: TeamsPeer, provider: TeamsProvider, status: int, style: str
) -> None:
    url = peer.new_webhook(style)
    peer.remove_webhook(url, status)

    error = await failure_of(provider, url)

    assert isinstance(error, TargetGone) and error.code == "chat_webhook_gone"
    assert "127.0.0.1" in error.message


async def test_rate_limiting_is_temporary_with_retry_after(peer: TeamsPeer, provider: TeamsProvider) -> None:
    peer.rate_limit_next(retry_after=12)

    error = await failure_of(provider, peer.new_webhook())

    assert isinstance(error, TemporaryDeliveryError)
    assert (error.code, error.retry_after_ms) == ("teams_http_429", 12_000)
    assert peer.request_count == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_temporary(peer: TeamsPeer, provider: TeamsProvider, status: int) -> None:
    peer.fail_next(status, "upstream trouble")

    error = await failure_of(provider, peer.new_webhook(CONNECTOR))

    assert isinstance(error, TemporaryDeliveryError) and error.code == f"teams_http_{status}"


@pytest.mark.parametrize(
    ("named", "kind", "error_code"),
    [
        (429, TemporaryDeliveryError, "teams_http_429"),
        (502, TemporaryDeliveryError, "teams_http_502"),
        (400, PermanentDeliveryError, "teams_http_400"),
        (413, PermanentDeliveryError, "chat_too_large"),
        (404, TargetGone, "chat_webhook_gone"),
    ],
)
async def test_a_200_carrying_an_error_is_classified_by_the_status_it_names(
    peer: TeamsPeer, provider: TeamsProvider, named: int, kind: type[DeliveryError], error_code: str
) -> None:
    """Given a connector answering 200 with "Microsoft Teams endpoint returned HTTP error N",
    then it is not a success: it fails as an answer N would."""
    peer.error_in_ok_next(named)

    error = await failure_of(provider, peer.new_webhook(CONNECTOR))

    assert type(error) is kind and error.code == error_code
    assert f"HTTP error {named}" in error.message


async def test_a_slow_webhook_times_out(peer: TeamsPeer, make_provider: Callable[..., TeamsProvider]) -> None:
    provider = make_provider(CHAT_TIMEOUT="300")
    peer.delay = 2.0

    error = await failure_of(provider, peer.new_webhook())

    assert isinstance(error, TemporaryDeliveryError) and error.code == "teams_timeout"


async def test_an_unreachable_webhook_is_temporary(provider: TeamsProvider) -> None:
    url = (
        f"http://127.0.0.1:{closed_port()}/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3tS3CR3Ts3cr3t"
    )

    error = await failure_of(provider, url)

    assert isinstance(error, TemporaryDeliveryError) and error.code == "teams_connection"


async def test_a_redirect_is_not_followed(peer: TeamsPeer, provider: TeamsProvider) -> None:
    peer.fail_next(307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    error = await failure_of(provider, peer.new_webhook())

    assert isinstance(error, TemporaryDeliveryError) and error.code == "teams_http_307"
    assert peer.request_count == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_are_refused_without_the_setting(
    peer: TeamsPeer, make_provider: Callable[..., TeamsProvider], host: str
) -> None:
    """Given WEBHOOK_ALLOW_PRIVATE_NETWORKS=false, when the URL names loopback (literally or by
    a name resolving to it), then it fails permanently before any request."""
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")
    url = peer.new_webhook().replace("127.0.0.1", host)

    error = await failure_of(provider, url)

    assert type(error) is PermanentDeliveryError and error.code == "chat_address_refused"
    assert "loopback" in error.message
    assert peer.request_count == 0


async def test_a_malformed_url_is_refused_without_repeating_it(provider: TeamsProvider) -> None:
    error = await failure_of(provider, "ftp://example.com/workflows/abc?sig=s3cr3tS3CR3Ts3cr3t")

    assert type(error) is PermanentDeliveryError and error.code == "chat_invalid_url"


async def test_messages_in_flight_together(peer: TeamsPeer, provider: TeamsProvider) -> None:
    url = peer.new_webhook()

    for n in range(3):
        await asyncio.gather(*(provider.send(teams(url, f"{n}")) for _ in range(8)))

    assert len(peer.wait_for(24)) == 24


async def test_an_answer_echoing_the_url_is_scrubbed() -> None:
    """Given an error page that repeats the path it was asked for, then the message keeps
    the host and drops the URL's secret parts."""
    url = "https://prod-12.westus.logic.azure.com/workflows/0f1e2d3c4b5a/triggers/manual/paths/invoke?sig=AbCdEfGhIjKlMnOp"
    page = f"<h1>Not here</h1> no route for {urlsplit(url).path}?{urlsplit(url).query} (sig=AbCdEfGhIjKlMnOp)"

    error = classify(400, page, url)

    assert error is not None and "prod-12.westus.logic.azure.com" in error.message
    assert_secret_kept(error, url)
    assert "AbCdEfGhIjKlMnOp" not in scrub(page, url)


@pytest.mark.parametrize(("status", "answer"), [(200, "1"), (202, ""), (200, '{"ok": true}')])
async def test_successes(status: int, answer: str) -> None:
    assert classify(status, answer, "https://example.webhook.office.com/webhookb2/x") is None
