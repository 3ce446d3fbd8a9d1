"""A local stand-in for Slack: the Web API's ``chat.postMessage`` and incoming webhooks.

``POST /api/chat.postMessage`` checks what Slack checks, in Slack's order: the bot token
(``Authorization: Bearer``, or a ``token`` form field; ``not_authed`` / ``invalid_auth``), the
channel (a known channel id, or a member id, posted to the direct-message channel Slack opens
for it; ``channel_not_found``, ``is_archived``), that there is ``text`` or ``blocks``
(``no_text``), the blocks' shape (``invalid_blocks``, with ``response_metadata.messages``
saying where, as Slack does) and the text's length (``msg_too_long``). It takes JSON bodies
(what the SDK sends) and form bodies (blocks as a JSON string). Answers are Slack's: HTTP 200
with ``{"ok": true, "channel", "ts", "message"}`` or ``{"ok": false, "error"}``, and rate
limiting as HTTP 429 with ``Retry-After``. Point the SDK at ``api_base``.

Incoming webhooks live on the same server: ``new_webhook`` gives a
``/services/T…/B…/<secret>`` URL that takes a JSON ``{text, blocks}`` (or a form field
``payload`` holding it) and answers as Slack's do, a status and a one-word body: 200 ``ok``,
400 ``invalid_payload`` / ``no_text`` / ``invalid_blocks``, 404 ``no_service`` (an unknown or
removed webhook), 410 ``channel_is_archived``.

Faults (``fail_next``, ``rate_limit_next``, ``drop_next``) answer the next requests of either
kind, after they were counted and authorized, before they are looked at further.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.sinks.faults import take_next
from tests.sinks.http_server import HttpSink, QuietServer

#: Block types chat.postMessage and webhooks take.
BLOCK_TYPES = frozenset({"section", "header", "divider", "context", "actions", "image", "rich_text", "input"})
TEXT_OBJECT_TYPES = frozenset({"plain_text", "mrkdwn"})
MAX_BLOCKS = 50
MAX_TEXT_CHARS = 40_000

DEFAULT_TOKEN = "xoxb-1111-2222-peertoken"
DEFAULT_CHANNEL = "C0PEERGEN"
DEFAULT_MEMBER = "U0PEERUSR"
DEFAULT_ARCHIVED = "C0ARCHIVD"
BOT_ID = "B0PEERBOT"
BOT_USER = "U0PEERBOT"
TEAM_ID = "T0PEERTEAM"

#: A fault's status meaning: close the connection without answering.
DROP = 0


@dataclass
class _Fault:
    status: int
    error: str
    headers: dict[str, str]
    remaining: int | None  # None: forever


@dataclass(frozen=True)
class SlackPost:
    """One message the peer accepted."""

    #: ``api`` (chat.postMessage) or ``webhook``.
    kind: str
    channel: str
    text: str | None
    blocks: list[Any] | None
    ts: str
    #: The bot token it came with (api), or the webhook's id (``B…``).
    token: str | None = None
    webhook: str | None = None
    content_type: str = ""
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Webhook:
    id: str
    secret: str
    channel: str
    archived: bool = False
    removed: bool = False


class _Refused(Exception):
    """A request Slack would refuse: its error name, HTTP status and optional notes."""

    def __init__(self, error: str, status: int = 200, messages: list[str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.messages = messages or []


def _check_text_object(value: Any, where: str, kinds: frozenset[str] = TEXT_OBJECT_TYPES) -> None:
    if not isinstance(value, dict) or value.get("type") not in kinds:
        raise _Refused(
            "invalid_blocks",
            200,
            [f"[ERROR] must be a {'|'.join(sorted(kinds))} text object [json-pointer:{where}]"],
        )
    if not isinstance(value.get("text"), str):
        raise _Refused("invalid_blocks", 200, [f"[ERROR] must provide a string [json-pointer:{where}/text]"])


def check_blocks(blocks: Any) -> list[Any]:
    """``blocks`` when Slack would take them; _Refused("invalid_blocks") saying where not."""
    if not isinstance(blocks, list):
        raise _Refused("invalid_blocks", 200, ["[ERROR] must be an array [json-pointer:/blocks]"])
    if len(blocks) > MAX_BLOCKS:
        raise _Refused(
            "invalid_blocks", 200, [f"[ERROR] no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
        )
    for index, block in enumerate(blocks):
        where = f"/blocks/{index}"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise _Refused("invalid_blocks", 200, [f"[ERROR] unsupported type [json-pointer:{where}/type]"])
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                raise _Refused(
                    "invalid_blocks", 200, [f"[ERROR] must provide text or fields [json-pointer:{where}]"]
                )
            if "text" in block:
                _check_text_object(block["text"], f"{where}/text")
            for n, item in enumerate(block.get("fields") or []):
                _check_text_object(item, f"{where}/fields/{n}")
        elif kind == "header":
            _check_text_object(block.get("text"), f"{where}/text", frozenset({"plain_text"}))
        elif kind == "image" and not (block.get("image_url") or block.get("slack_file")):
            raise _Refused("invalid_blocks", 200, [f"[ERROR] must provide image_url [json-pointer:{where}]"])
        elif kind in ("context", "actions", "rich_text") and not isinstance(block.get("elements"), list):
            raise _Refused("invalid_blocks", 200, [f"[ERROR] must provide elements [json-pointer:{where}]"])
    return blocks


def _form(raw: bytes) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(raw.decode(), keep_blank_values=True).items()}


def _new_ts() -> str:
    """A message timestamp as Slack writes them: epoch seconds and six digits."""
    now = time.time()
    return f"{int(now)}.{int((now % 1) * 1_000_000):06d}"


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), "application/json; charset=utf-8", headers)

    def _text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        # Slack's webhooks answer text/html, whatever the outcome.
        self._send(status, text.encode(), "text/html", headers)

    def do_POST(self) -> None:
        peer: SlackPeer = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        peer._count()
        if path.startswith("/api/"):
            self._api(peer, path.removeprefix("/api/"), raw)
        elif path.startswith("/services/"):
            self._webhook(peer, path, raw)
        else:
            self._text(404, "not found")

    # -- the Web API

    def _api(self, peer: SlackPeer, method: str, raw: bytes) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        try:
            args = self._api_args(content_type, raw)
            token = self._token(args)
            if token is None:
                raise _Refused("not_authed")
            if not peer._authorized(token):
                raise _Refused("invalid_auth")
            if method != "chat.postMessage":
                raise _Refused("unknown_method")
            if self._fault(peer, api=True):
                return
            if not peer._wait_delay():
                self.close_connection = True  # reset or stopped while waiting: hang up
                return
            post = peer._post_message(args, token, content_type)
        except _Refused as refused:
            document: dict[str, Any] = {"ok": False, "error": refused.error}
            if refused.messages:
                document["response_metadata"] = {"messages": refused.messages}
            self._json(refused.status, document)
            return
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": post.text or "",
            "ts": post.ts,
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "team": TEAM_ID,
        }
        if post.blocks is not None:
            message["blocks"] = post.blocks
        self._json(200, {"ok": True, "channel": post.channel, "ts": post.ts, "message": message})

    def _api_args(self, content_type: str, raw: bytes) -> dict[str, Any]:
        if content_type == "application/json":
            try:
                args = json.loads(raw or b"{}")
            except ValueError:
                raise _Refused("invalid_json") from None
            if not isinstance(args, dict):
                raise _Refused("invalid_json")
            return args
        if content_type in ("application/x-www-form-urlencoded", ""):
            args = dict(_form(raw))
            if "blocks" in args:
                try:
                    args["blocks"] = json.loads(args["blocks"])
                except ValueError:
                    raise _Refused("invalid_blocks_format") from None
            return args
        raise _Refused("invalid_form_data")

    def _token(self, args: dict[str, Any]) -> str | None:
        header = self.headers.get("Authorization") or ""
        if header.startswith("Bearer "):
            return header.removeprefix("Bearer ").strip()
        token = args.get("token")
        return token if isinstance(token, str) and token else None

    def _fault(self, peer: SlackPeer, *, api: bool) -> bool:
        """Answer with the next programmed fault, if there is one."""
        fault = peer._take_fault()
        if fault is None:
            return False
        if fault.status == DROP:
            self.close_connection = True  # hang up without an answer
            return True
        if api:
            self._json(fault.status, {"ok": False, "error": fault.error}, fault.headers)
        else:
            self._text(fault.status, fault.error, fault.headers)
        return True

    # -- incoming webhooks

    def _webhook(self, peer: SlackPeer, path: str, raw: bytes) -> None:
        hook = peer._webhook_at(path)
        if hook is None or hook.removed:
            self._text(404, "no_service")
            return
        if self._fault(peer, api=False):
            return
        if not peer._wait_delay():
            self.close_connection = True  # reset or stopped while waiting: hang up
            return
        if hook.archived:
            self._text(410, "channel_is_archived")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        try:
            document = json.loads(_form(raw).get("payload", "") if "form" in content_type else raw)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            self._text(400, "invalid_payload")
            return
        text, blocks = document.get("text"), document.get("blocks")
        if not text and not blocks:
            self._text(400, "no_text")
            return
        try:
            if blocks is not None:
                check_blocks(blocks)
        except _Refused as refused:
            self._text(400, refused.error)
            return
        ts = _new_ts()
        peer._record(
            SlackPost(
                "webhook",
                hook.channel,
                text,
                blocks,
                ts,
                webhook=hook.id,
                content_type=content_type,
                body=document,
            )
        )
        self._text(200, "ok")


class SlackPeer(HttpSink):
    """Slack's Web API and incoming webhooks on 127.0.0.1. Use as a context manager or call
    start()/stop()."""

    handler = _Handler

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        channels: tuple[str, ...] = (DEFAULT_CHANNEL,),
        members: tuple[str, ...] = (DEFAULT_MEMBER,),
        archived: tuple[str, ...] = (DEFAULT_ARCHIVED,),
    ) -> None:
        self.token = token
        self.channels = set(channels)
        self.members = set(members)
        self.archived = set(archived)
        #: Seconds each request waits before it is answered (timeout tests).
        self.delay = 0.0
        #: Every request that reached the peer, refused or not (retry counting).
        self.request_count = 0
        #: Requests refused for a missing or wrong token.
        self.unauthorized = 0
        self._cond = threading.Condition()
        self._posts: list[SlackPost] = []
        self._faults: list[_Fault] = []
        self._webhooks: dict[str, _Webhook] = {}
        #: Set to wake requests waiting out ``delay`` (at reset and stop).
        self._wake = threading.Event()

    def stop(self) -> None:
        self._wake.set()  # requests waiting out a delay end now
        super().stop()

    @property
    def api_base(self) -> str:
        """What SLACK_API_BASE is set to: the SDK appends method names to it."""
        return f"{self.base_url}/api/"

    def reset(self) -> None:
        """Forget posts, faults, counters and the delay, and hang up on requests still waiting
        out a delay, so that one running peer serves test after test."""
        with self._cond:
            self._posts.clear()
            self._faults.clear()
            self.request_count = self.unauthorized = 0
            self.delay = 0.0
            self._wake.set()
            self._wake = threading.Event()

    def new_webhook(self, channel: str = DEFAULT_CHANNEL, *, archived: bool = False) -> str:
        """A new incoming webhook posting to ``channel``; its URL."""
        hook = _Webhook("B" + secrets.token_hex(5).upper(), secrets.token_urlsafe(18), channel, archived)
        with self._cond:
            self._webhooks[f"/services/{TEAM_ID}/{hook.id}/{hook.secret}"] = hook
        return f"{self.base_url}/services/{TEAM_ID}/{hook.id}/{hook.secret}"

    def remove_webhook(self, url: str) -> None:
        """The webhook's app was removed: it answers 404 ``no_service`` from now on."""
        self._hook_of(url).removed = True

    def archive_webhook_channel(self, url: str) -> None:
        """The webhook's channel was archived: it answers 410 ``channel_is_archived``."""
        self._hook_of(url).archived = True

    def fail_next(
        self, error: str, status: int = 200, *, headers: dict[str, str] | None = None, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` requests (None: all) with ``error``: the Web API as
        ``{"ok": false, "error"}``, webhooks as the bare word, both with ``status``."""
        with self._cond:
            self._faults.append(_Fault(status, error, dict(headers or {}), times))

    def rate_limit_next(self, retry_after: int = 30, *, times: int | None = 1) -> None:
        """HTTP 429 with Retry-After, Slack's ``ratelimited``."""
        self.fail_next("ratelimited", 429, headers={"Retry-After": str(retry_after)}, times=times)

    def drop_next(self, times: int | None = 1) -> None:
        """Hang up on the next ``times`` requests without answering."""
        self.fail_next("", DROP, times=times)

    @property
    def posts(self) -> list[SlackPost]:
        with self._cond:
            return list(self._posts)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SlackPost]:
        """Block until ``count`` posts were accepted; AssertionError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._posts) >= count, timeout=timeout):
                raise AssertionError(f"Slack peer got {len(self._posts)} of {count} posts in {timeout}s")
            return list(self._posts)

    # -- used by the handler

    def _hook_of(self, url: str) -> _Webhook:
        path = "/services/" + url.split("/services/", 1)[1]
        with self._cond:
            return self._webhooks[path]

    def _webhook_at(self, path: str) -> _Webhook | None:
        with self._cond:
            return self._webhooks.get(path)

    def _count(self) -> None:
        with self._cond:
            self.request_count += 1

    def _authorized(self, token: str) -> bool:
        ok = secrets.compare_digest(token.encode(), self.token.encode())
        if not ok:
            with self._cond:
                self.unauthorized += 1
        return ok

    def _wait_delay(self) -> bool:
        """Wait out ``delay``; False when the peer was reset or stopped meanwhile."""
        with self._cond:
            delay, wake = self.delay, self._wake
        return not delay or not wake.wait(delay)

    def _take_fault(self) -> _Fault | None:
        with self._cond:
            return take_next(self._faults)

    def _post_message(self, args: dict[str, Any], token: str, content_type: str) -> SlackPost:
        """chat.postMessage's checks after the token; the accepted post."""
        channel = args.get("channel")
        if not isinstance(channel, str) or not channel:
            raise _Refused("channel_not_found")
        if channel in self.archived:
            raise _Refused("is_archived")
        if channel in self.members:
            posted_in = "D" + channel[1:]  # the direct-message channel opened for the member
        elif channel in self.channels:
            posted_in = channel
        else:
            raise _Refused("channel_not_found")
        text, blocks = args.get("text"), args.get("blocks")
        if not text and not blocks:
            raise _Refused("no_text")
        if blocks is not None:
            check_blocks(blocks)
        if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT_CHARS):
            raise _Refused("msg_too_long")
        post = SlackPost(
            "api", posted_in, text, blocks, _new_ts(), token=token, content_type=content_type, body=args
        )
        self._record(post)
        return post

    def _record(self, post: SlackPost) -> None:
        with self._cond:
            self._posts.append(post)
            self._cond.notify_all()
