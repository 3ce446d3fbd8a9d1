"""The Slack provider (the real slack_sdk asyncio clients) against a local Slack peer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from shared.config import Settings
from shared.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TargetGone,
    TemporaryDeliveryError,
)
from shared.payloads import ChatPayload
from tests.sinks.slack_peer import (
    DEFAULT_ARCHIVED,
    DEFAULT_CHANNEL,
    DEFAULT_MEMBER,
    MAX_TEXT_CHARS,
    SlackPeer,
)
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.slack import FALLBACK_MAX_CHARS, SlackProvider, classify, fallback_text

pytestmark = pytest.mark.anyio

TOKEN = "xoxb-4242-4242-testtoken"

BLOCKS: list[Any] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deploy finished"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*api* is live on `v2.3.1` ✓"}},
    {"type": "divider"},
    {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}}]},
]


def chat(
    text: str = "Deploy finished ✓",
    *,
    channel: str | None = DEFAULT_CHANNEL,
    webhook_url: str | None = None,
    blocks: list[Any] | None = None,
) -> Outgoing[ChatPayload]:
    return outgoing(
        ChatPayload(service="slack", text=text, channel=channel, webhook_url=webhook_url, blocks=blocks)
    )


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def assert_secret_kept(error: BaseException, url: str) -> None:
    """The webhook URL (the credential) is in neither the error nor what it chains."""
    secret = url.rsplit("/", 1)[1]
    seen: BaseException | None = error
    while seen is not None:
        assert secret not in str(seen) and url not in repr(seen.args)
        seen = seen.__cause__ or seen.__context__


@pytest.fixture(scope="module")
def running_peer() -> Iterator[SlackPeer]:
    with SlackPeer(TOKEN) as running:
        yield running


@pytest.fixture
def peer(running_peer: SlackPeer) -> SlackPeer:
    """One peer for the module (a server start and stop per test would cost more than the
    tests), forgetting everything between tests."""
    running_peer.reset()
    return running_peer


@pytest.fixture
async def make_provider(tmp_path: Path, peer: SlackPeer) -> AsyncIterator[Callable[..., SlackProvider]]:
    made: list[SlackProvider] = []

    def make(**env: str) -> SlackProvider:
        settings = Settings.from_env(
            {
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_API_BASE": peer.api_base,
                "CHAT_TIMEOUT": "2000",
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                "KAI_VAR_DIR": str(tmp_path),
                **env,
            }
        )
        provider = SlackProvider(settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., SlackProvider]) -> SlackProvider:
    return make_provider()


# -- the Web API, with the bot token


async def test_a_bot_post_arrives_with_text_blocks_and_the_token(
    peer: SlackPeer, provider: SlackProvider
) -> None:
    """Given text and blocks for a channel, when sent, then chat.postMessage receives both
    with our bot token and the result names the channel and the message's ts."""
    result = await provider.send(chat("Deploy finished ✓", blocks=BLOCKS))

    (post,) = peer.wait_for(1)
    assert (post.kind, post.channel, post.text, post.blocks) == (
        "api",
        DEFAULT_CHANNEL,
        "Deploy finished ✓",
        BLOCKS,
    )
    assert post.token == TOKEN and post.content_type == "application/json"
    assert result.provider_message_id == f"{DEFAULT_CHANNEL}:{post.ts}"
    assert result.delivered is True


async def test_a_member_id_is_posted_to_their_direct_message_channel(
    peer: SlackPeer, provider: SlackProvider
) -> None:
    """Given a member id, then the id names the DM channel Slack answered with."""
    result = await provider.send(chat(channel=DEFAULT_MEMBER))

    (post,) = peer.wait_for(1)
    assert post.channel.startswith("D")
    assert result.provider_message_id == f"{post.channel}:{post.ts}"


async def test_blocks_alone_get_a_fallback_text(peer: SlackPeer, provider: SlackProvider) -> None:
    """Given blocks and no text, then Slack still gets a text: the blocks' words, without
    their buttons."""
    await provider.send(chat("", blocks=BLOCKS))

    (post,) = peer.wait_for(1)
    assert post.text == "Deploy finished *api* is live on `v2.3.1` ✓"


@pytest.mark.parametrize(
    ("kwargs", "error_code"),
    [
        ({"channel": "C0NOSUCH"}, "slack_channel_not_found"),
        ({"channel": DEFAULT_ARCHIVED}, "slack_is_archived"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "slack_msg_too_long"),
        (
            {"blocks": [{"type": "section", "text": {"type": "markdown", "text": "x"}}]},
            "slack_invalid_blocks",
        ),
        ({"blocks": [{"type": "carousel"}]}, "slack_invalid_blocks"),
    ],
)
async def test_refused_posts_fail_permanently(
    peer: SlackPeer, provider: SlackProvider, kwargs: dict[str, Any], error_code: str
) -> None:
    """Given a post Slack refuses for what it is, then the failure is permanent and named."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(chat(**kwargs))

    assert caught.value.code == error_code
    assert not isinstance(caught.value, TargetGone)
    assert peer.posts == []


async def test_invalid_blocks_say_where(peer: SlackPeer, provider: SlackProvider) -> None:
    """Given blocks Slack refuses, then the error repeats Slack's pointer to the bad field."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(chat(blocks=[{"type": "section", "text": {"type": "markdown", "text": "x"}}]))

    assert "/blocks/0/text" in caught.value.message


@pytest.mark.parametrize("error", ["user_not_found", "not_in_channel", "too_many_attachments", "no_text"])
async def test_other_refusals_are_permanent(peer: SlackPeer, provider: SlackProvider, error: str) -> None:
    """Given Slack refusing the post with ``error``, then the failure is permanent and named."""
    peer.fail_next(error)

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == f"slack_{error}"


@pytest.mark.parametrize(
    "error",
    ["invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "missing_scope"],
)
async def test_credential_errors_are_temporary(peer: SlackPeer, provider: SlackProvider, error: str) -> None:
    """Given Slack refusing our token or app, then the message waits for the fix: temporary."""
    peer.fail_next(error)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == f"slack_{error}"


async def test_a_wrong_token_is_refused_by_the_peer_and_temporary(
    peer: SlackPeer, make_provider: Callable[..., SlackProvider]
) -> None:
    provider = make_provider(SLACK_BOT_TOKEN="xoxb-wrong")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == "slack_invalid_auth"
    assert peer.unauthorized == 1


@pytest.mark.parametrize(
    ("error", "status", "error_code"),
    [
        ("internal_error", 200, "slack_internal_error"),
        ("fatal_error", 200, "slack_fatal_error"),
        ("service_unavailable", 200, "slack_service_unavailable"),
        ("request_timeout", 200, "slack_request_timeout"),
        ("<html>Bad Gateway</html>", 502, "slack_http_502"),
        ("", 503, "slack_http_503"),
    ],
)
async def test_slack_trouble_is_temporary(
    peer: SlackPeer, provider: SlackProvider, error: str, status: int, error_code: str
) -> None:
    peer.fail_next(error, status)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == error_code
    assert peer.request_count == 1  # no retry inside the attempt


async def test_rate_limiting_is_temporary_with_retry_after_and_not_retried_inside(
    peer: SlackPeer, provider: SlackProvider
) -> None:
    """Given Slack answering 429 ratelimited with Retry-After: 30, then the failure is
    temporary, carries 30 s, and the SDK did not retry it (one request at the peer)."""
    peer.rate_limit_next(retry_after=30)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert (caught.value.code, caught.value.retry_after_ms) == ("slack_ratelimited", 30_000)
    assert peer.request_count == 1


async def test_a_dropped_connection_is_not_retried_inside_the_attempt(
    peer: SlackPeer, provider: SlackProvider
) -> None:
    """The SDK's default handler retries a dropped connection once; ours are off, so the
    peer sees one request and the broker does the retrying."""
    peer.drop_next(times=None)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == "slack_connection"
    assert peer.request_count == 1


async def test_a_slow_api_times_out(peer: SlackPeer, make_provider: Callable[..., SlackProvider]) -> None:
    provider = make_provider(CHAT_TIMEOUT="300")
    peer.delay = 2.0

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == "slack_timeout"


async def test_connection_refused_is_temporary(make_provider: Callable[..., SlackProvider]) -> None:
    provider = make_provider(SLACK_API_BASE=f"http://127.0.0.1:{closed_port()}/api/")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(chat())

    assert caught.value.code == "slack_connection"


async def test_without_a_token_bot_posts_wait_for_configuration(
    peer: SlackPeer, make_provider: Callable[..., SlackProvider]
) -> None:
    """Given no SLACK_BOT_TOKEN, then the provider builds (webhooks need none), and a bot post
    fails temporarily naming the setting, without a request."""
    provider = make_provider(SLACK_BOT_TOKEN="")

    with pytest.raises(TemporaryDeliveryError, match="SLACK_BOT_TOKEN") as caught:
        await provider.send(chat())

    assert caught.value.code == "slack_not_configured"
    assert peer.request_count == 0
    await provider.send(chat(channel=None, webhook_url=peer.new_webhook()))
    assert len(peer.wait_for(1)) == 1


async def test_a_message_with_no_destination_or_content_fails_permanently(provider: SlackProvider) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(chat(channel=None))
    assert caught.value.code == "chat_invalid"

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(chat("", blocks=[]))
    assert caught.value.code == "slack_no_text"


async def test_messages_in_flight_together(peer: SlackPeer, provider: SlackProvider) -> None:
    """Given eight posts in flight at a time, three times over, then all arrive with distinct
    ids."""
    results = [
        r for n in range(3) for r in await asyncio.gather(*(provider.send(chat(f"{n}")) for _ in range(8)))
    ]

    assert len(peer.wait_for(24)) == 24
    assert len({r.provider_message_id for r in results}) == 24


async def test_the_peer_takes_form_bodies_too(peer: SlackPeer) -> None:
    """The SDK sends form bodies for some calls (``data=``); the peer reads them like Slack,
    blocks as a JSON string."""
    client = AsyncWebClient(token=TOKEN, base_url=peer.api_base, retry_handlers=[])

    response = await client.api_call(
        "chat.postMessage", data={"channel": DEFAULT_CHANNEL, "text": "hi", "blocks": '[{"type": "divider"}]'}
    )

    (post,) = peer.wait_for(1)
    assert response["ok"] is True and post.content_type == "application/x-www-form-urlencoded"
    assert post.blocks == [{"type": "divider"}]


# -- incoming webhooks


async def test_a_webhook_post_arrives(peer: SlackPeer, provider: SlackProvider) -> None:
    """Given a webhook URL, then its channel gets the text and blocks, and the result keeps
    nothing of the URL."""
    url = peer.new_webhook()

    result = await provider.send(chat("Deploy finished ✓", channel=None, webhook_url=url, blocks=BLOCKS))

    (post,) = peer.wait_for(1)
    assert (post.kind, post.channel, post.text, post.blocks) == (
        "webhook",
        DEFAULT_CHANNEL,
        "Deploy finished ✓",
        BLOCKS,
    )
    assert post.token is None
    assert result.delivered is True and result.exchange is None
    assert url.rsplit("/", 1)[1] not in repr(result)


async def test_a_webhook_wins_over_the_channel(peer: SlackPeer, provider: SlackProvider) -> None:
    await provider.send(chat(channel=DEFAULT_MEMBER, webhook_url=peer.new_webhook()))

    assert peer.wait_for(1)[0].kind == "webhook"


async def _webhook_failure(provider: SlackProvider, url: str, **kwargs: Any) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(chat(channel=None, webhook_url=url, **kwargs))
    assert_secret_kept(caught.value, url)
    return caught.value


async def test_a_removed_webhook_is_gone(peer: SlackPeer, provider: SlackProvider) -> None:
    url = peer.new_webhook()
    peer.remove_webhook(url)

    error = await _webhook_failure(provider, url)

    assert isinstance(error, TargetGone) and error.code == "chat_webhook_gone"
    assert "no_service" in error.message and "127.0.0.1" in error.message


async def test_a_webhook_of_an_archived_channel_is_gone(peer: SlackPeer, provider: SlackProvider) -> None:
    url = peer.new_webhook()
    peer.archive_webhook_channel(url)

    error = await _webhook_failure(provider, url)

    assert isinstance(error, TargetGone) and "channel_is_archived" in error.message


@pytest.mark.parametrize("error", ["no_team", "channel_not_found"])
async def test_other_404s_are_gone(peer: SlackPeer, provider: SlackProvider, error: str) -> None:
    peer.fail_next(error, 404)

    assert isinstance(await _webhook_failure(provider, peer.new_webhook()), TargetGone)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("action_prohibited", 403),
        ("posting_to_general_channel_denied", 403),
        ("invalid_payload", 400),
        ("no_text", 400),
        ("invalid_blocks", 400),
    ],
)
async def test_webhook_refusals_are_permanent(
    peer: SlackPeer, provider: SlackProvider, error: str, status: int
) -> None:
    peer.fail_next(error, status)

    failure = await _webhook_failure(provider, peer.new_webhook())

    assert type(failure) is PermanentDeliveryError and failure.code == f"slack_{error}"


async def test_webhook_blocks_are_checked_by_the_peer(peer: SlackPeer, provider: SlackProvider) -> None:
    failure = await _webhook_failure(provider, peer.new_webhook(), blocks=[{"type": "carousel"}])

    assert type(failure) is PermanentDeliveryError and failure.code == "slack_invalid_blocks"


async def test_a_rate_limited_webhook_is_temporary_and_not_retried_inside(
    peer: SlackPeer, provider: SlackProvider
) -> None:
    peer.rate_limit_next(retry_after=7)

    failure = await _webhook_failure(provider, peer.new_webhook())

    assert isinstance(failure, TemporaryDeliveryError)
    assert (failure.code, failure.retry_after_ms) == ("slack_ratelimited", 7_000)
    assert peer.request_count == 1


@pytest.mark.parametrize(("body", "status"), [("rollup_error", 500), ("<h1>Bad Gateway</h1>", 502)])
async def test_webhook_server_errors_are_temporary(
    peer: SlackPeer, provider: SlackProvider, body: str, status: int
) -> None:
    peer.fail_next(body, status)

    failure = await _webhook_failure(provider, peer.new_webhook())

    assert isinstance(failure, TemporaryDeliveryError)
    assert "<h1>" not in failure.message


async def test_a_dropped_webhook_connection_is_temporary_and_not_retried_inside(
    peer: SlackPeer, provider: SlackProvider
) -> None:
    peer.drop_next(times=None)

    failure = await _webhook_failure(provider, peer.new_webhook())

    assert isinstance(failure, TemporaryDeliveryError) and failure.code == "slack_connection"
    assert peer.request_count == 1


async def test_a_slow_webhook_times_out(peer: SlackPeer, make_provider: Callable[..., SlackProvider]) -> None:
    provider = make_provider(CHAT_TIMEOUT="300")
    peer.delay = 2.0

    failure = await _webhook_failure(provider, peer.new_webhook())

    assert isinstance(failure, TemporaryDeliveryError) and failure.code == "slack_timeout"


async def test_an_unreachable_webhook_is_temporary(provider: SlackProvider) -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T0/B0/s3cr3tS3CR3Ts3cr3t"

    failure = await _webhook_failure(provider, url)

    assert isinstance(failure, TemporaryDeliveryError) and failure.code == "slack_connection"


async def test_a_redirect_is_not_followed(peer: SlackPeer, provider: SlackProvider) -> None:
    """Given a webhook answering 302 to another address, then nothing follows it."""
    peer.fail_next("moved", 302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    failure = await _webhook_failure(provider, peer.new_webhook())

    assert isinstance(failure, TemporaryDeliveryError) and failure.code == "slack_http_302"
    assert peer.request_count == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_are_refused_without_the_setting(
    peer: SlackPeer, make_provider: Callable[..., SlackProvider], host: str
) -> None:
    """Given WEBHOOK_ALLOW_PRIVATE_NETWORKS=false, when a webhook names loopback (literally or
    by a name resolving to it), then it fails permanently before any request."""
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")
    url = peer.new_webhook().replace("127.0.0.1", host)

    failure = await _webhook_failure(provider, url)

    assert type(failure) is PermanentDeliveryError and failure.code == "chat_address_refused"
    assert "loopback" in failure.message
    assert peer.request_count == 0


async def test_a_malformed_webhook_url_is_refused_without_repeating_it(provider: SlackProvider) -> None:
    url = "ftp://hooks.example/services/T0/B0/s3cr3tS3CR3Ts3cr3t"

    failure = await _webhook_failure(provider, url)

    assert type(failure) is PermanentDeliveryError and failure.code == "chat_invalid_url"


# -- pure functions


def test_fallback_text_reads_the_blocks_words_and_stays_short() -> None:
    rich = [
        {
            "type": "rich_text",
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": "Hello  there"}]}
            ],
        },
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": "*a*"}, {"type": "plain_text", "text": "b"}],
            "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Click"}},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]},
    ]

    assert fallback_text(rich) == "Hello there *a* b c"
    assert fallback_text(None) == "" and fallback_text([{"type": "divider"}]) == ""
    long = fallback_text([{"type": "section", "text": {"type": "plain_text", "text": "word " * 200}}])
    assert len(long) == FALLBACK_MAX_CHARS and long.endswith("…")


@pytest.mark.parametrize(
    ("error", "kind", "error_code"),
    [
        (aiohttp.ClientOSError(104, "Connection reset by peer"), TemporaryDeliveryError, "slack_connection"),
        (TimeoutError(), TemporaryDeliveryError, "slack_timeout"),
        (aiohttp.ServerDisconnectedError(), TemporaryDeliveryError, "slack_connection"),
        (ValueError("odd"), TemporaryDeliveryError, "slack_error"),
    ],
)
def test_classify_maps_transport_errors(
    error: BaseException, kind: type[DeliveryError], error_code: str
) -> None:
    mapped = classify(error)

    assert type(mapped) is kind and mapped.code == error_code
