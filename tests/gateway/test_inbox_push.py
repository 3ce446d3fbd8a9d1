"""The inbox page's browser notifications in a real headless Chromium: ``/inbox-sw.js`` is
served with its own policy and registers under the page's; the "Enable browser notifications"
control shows only when the server has a VAPID key; enabling it asks for permission, subscribes
with the server's key and registers the subscription as a device of the user, and disabling it
removes the device; the service worker shows the push worker's payload as a notification.

Headless Chromium has no push service here (its contexts are private windows, which Chrome
gives none, and Google's is off the network anyway): a real ``pushManager.subscribe`` fails,
which the page must say. Past that point the browser's ``subscribe`` is stubbed to hand back a
subscription of the local push service (tests.sinks.push_service), and pushes reach the
service worker through the DevTools protocol, as DevTools' own "Push" button sends them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from producer.gateway.app import create_app
from producer.gateway.inbox_page import WORKER_POLICY
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, Fleet
from tests.gateway.browser import UI_TIMEOUT_MS, axe_violations, load_axe
from tests.gateway.inbox import user_token
from tests.gateway.server import LiveServer
from tests.sinks.push_service import PushService, Subscription, b64url_decode
from workers.providers.webpush import generate_vapid_keys

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
ENABLE = "Enable browser notifications"
DISABLE = "Disable browser notifications"
DEVICES = "/api/notifications/devices"

#: Gives the page's ``pushManager.subscribe`` a subscription of the local push service (the
#: browser's own needs a push service it cannot reach): ``%s`` is its ``toJSON()``. The page
#: passes what the browser would get; the stub keeps the key it was given.
STUB_SUBSCRIBE = """(() => {
  const made = %s;
  window.subscribeCalls = [];
  window.unsubscribed = 0;
  PushManager.prototype.subscribe = function (options) {
    window.subscribeCalls.push({
      userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)),
    });
    return Promise.resolve({
      endpoint: made.endpoint,
      options: options,
      toJSON: () => made,
      unsubscribe: () => { window.unsubscribed += 1; return Promise.resolve(true); },
    });
  };
})();"""

#: Counts the page's calls of the browser's own ``pushManager.subscribe``.
SPY_SUBSCRIBE = """(() => {
  const subscribe = PushManager.prototype.subscribe;
  window.subscribeCalls = [];
  PushManager.prototype.subscribe = function (options) {
    window.subscribeCalls.push({
      userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)),
    });
    return subscribe.call(this, options);
  };
})();"""

#: The notifications the page's service worker registration shows.
SHOWN = """async () => {
  const registration = await navigator.serviceWorker.ready;
  const shown = await registration.getNotifications();
  return shown.map((n) => ({ title: n.title, body: n.body, icon: n.icon, tag: n.tag, data: n.data }));
}"""


@pytest.fixture(scope="module")
def vapid() -> tuple[str, str]:
    """The server's VAPID key pair: (private, public)."""
    return generate_vapid_keys()


@pytest.fixture(scope="module")
def push_settings(base_env: dict[str, str], vapid: tuple[str, str]) -> Settings:
    return Settings.from_env(
        {**base_env, "VAPID_PRIVATE_KEY": vapid[0], "VAPID_SUBJECT": "mailto:ops@example.com"}
    )


@pytest.fixture(scope="module")
def gateway(push_settings: Settings) -> Iterator[LiveServer]:
    """One gateway with web push configured for the module (tables are emptied per test)."""
    with LiveServer(create_app(push_settings)) as server:
        yield server


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no service worker, no storage) that may show notifications,
    with axe-core loaded."""
    context = browser.new_context()
    context.grant_permissions(["notifications"])
    load_axe(context)
    yield context
    context.close()


@pytest.fixture
def push_service() -> Iterator[PushService]:
    with PushService() as service:
        yield service


def policy_refusals(page: Page) -> list[str]:
    """Fills with the page's console messages about its content security policy."""
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return refused


def device_posts(page: Page) -> list[str]:
    """Fills with the page's POSTs registering a device."""
    posts: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith(DEVICES):
            posts.append(request.post_data or "")

    page.on("request", record)
    return posts


def devices(server: LiveServer, user_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.url}/api/users/{user_id}/devices", headers=SERVER)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def open_inbox(page: Page, server: LiveServer, user_id: str, extra: str = "") -> None:
    page.goto(f"{server.url}/inbox#token={user_token(user_id)}{extra}")
    expect(page.locator("#status")).to_have_text("live", timeout=UI_TIMEOUT_MS)


def stubbed_page(context: BrowserContext, subscription: Subscription) -> Page:
    """A page whose browser's ``pushManager.subscribe`` answers with ``subscription``."""
    page = context.new_page()
    page.add_init_script(STUB_SUBSCRIBE % json.dumps(subscription.as_json()))
    return page


def deliver_push(context: BrowserContext, page: Page, origin: str, scope: str, data: str) -> None:
    """Hand ``data`` to the service worker of ``scope`` as a push message, through DevTools,
    once a version of that registration is activated: ``serviceWorker.ready`` resolves while
    the worker is still activating, and a push dispatched then may go nowhere."""
    session = context.new_cdp_session(page)
    registrations: list[str] = []
    activated: set[str] = set()

    def registered(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if registration["scopeURL"] == scope and not registration["isDeleted"]:
                registrations.append(registration["registrationId"])

    def versions(event: dict[str, Any]) -> None:
        for version in event["versions"]:
            if version["status"] == "activated":
                activated.add(version["registrationId"])

    session.on("ServiceWorker.workerRegistrationUpdated", registered)
    session.on("ServiceWorker.workerVersionUpdated", versions)
    session.send("ServiceWorker.enable")
    for _ in range(UI_TIMEOUT_MS // 50):
        if any(registration in activated for registration in registrations):
            break
        page.wait_for_timeout(50)  # lets the session's events arrive
    ready = [registration for registration in registrations if registration in activated]
    assert ready, f"no activated service worker for {scope}: registrations {registrations}"
    session.send(
        "ServiceWorker.deliverPushMessage", {"origin": origin, "registrationId": ready[0], "data": data}
    )


def shown_notifications(page: Page, count: int) -> list[dict[str, Any]]:
    """The notifications shown, once there are ``count`` of them."""
    shown: list[dict[str, Any]] = []
    for _ in range(UI_TIMEOUT_MS // 50):
        shown = page.evaluate(SHOWN)
        if len(shown) >= count:
            return shown
        page.wait_for_timeout(50)
    raise AssertionError(f"{len(shown)} notifications shown, expected {count}")


def test_the_service_worker_is_served_and_registers_under_the_pages_policy(
    gateway: LiveServer, context: BrowserContext
) -> None:
    """Then /inbox-sw.js is JavaScript with a policy of its own that loads nothing but images,
    and the page, under its strict policy (no ``worker-src``: ``script-src 'self'`` stands for
    it), registers it for /inbox: ``navigator.serviceWorker.ready`` resolves with that scope and
    the worker controls the page."""
    answer = httpx.get(f"{gateway.url}/inbox-sw.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["content-security-policy"] == WORKER_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "worker-src" not in httpx.get(f"{gateway.url}/inbox").headers["content-security-policy"]

    page = context.new_page()
    refused = policy_refusals(page)
    page.goto(f"{gateway.url}/inbox")
    registered = page.evaluate(
        """async () => {
          await navigator.serviceWorker.register("inbox-sw.js", { scope: "inbox" });
          const ready = await navigator.serviceWorker.ready;
          return { scope: ready.scope, script: ready.active.scriptURL };
        }"""
    )
    assert registered == {"scope": f"{gateway.url}/inbox", "script": f"{gateway.url}/inbox-sw.js"}
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=UI_TIMEOUT_MS)
    assert page.evaluate("navigator.serviceWorker.controller.scriptURL") == f"{gateway.url}/inbox-sw.js"
    assert refused == []


def test_a_subscription_the_browser_cannot_make_is_reported_and_nothing_is_saved(
    gateway: LiveServer, context: BrowserContext, vapid: tuple[str, str]
) -> None:
    """Given web push configured and notifications allowed, when Alice clicks "Enable browser
    notifications" in a browser without a push service, then the page registers its worker and
    calls the browser's subscribe with the server's key, says in its status line that the
    browser could not sign up, keeps the control as it was, and registers no device; the page
    in that state passes an axe-core audit."""
    context.add_init_script(SPY_SUBSCRIBE)
    page = context.new_page()
    posts = device_posts(page)
    open_inbox(page, gateway, "alice")
    toggle = page.get_by_role("button", name=ENABLE)
    expect(toggle).to_be_visible(timeout=UI_TIMEOUT_MS)

    toggle.focus()
    page.keyboard.press("Enter")

    status = page.get_by_role("status")
    expect(status).to_contain_text("could not sign up for push notifications", timeout=UI_TIMEOUT_MS)
    expect(toggle).to_have_text(ENABLE)
    expect(toggle).not_to_have_attribute("aria-disabled", "true")
    calls = page.evaluate("window.subscribeCalls")
    assert calls == [{"userVisibleOnly": True, "key": list(b64url_decode(vapid[1]))}]
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)") == f"{gateway.url}/inbox"
    assert posts == []
    assert devices(gateway, "alice") == []
    assert axe_violations(page) == []


def test_enabling_registers_the_browser_and_disabling_removes_it(
    gateway: LiveServer, context: BrowserContext, push_service: PushService, vapid: tuple[str, str]
) -> None:
    """Given the browser's subscribe answering with a subscription of a push service, when
    Alice enables browser notifications, then it was asked for with the server's key, for
    notifications she sees, and her devices hold it (kind ``web``, labelled with the browser);
    the control offers to disable them, also after a reload. When she disables them, the device
    is removed and the browser unsubscribed."""
    subscription = push_service.subscribe(application_server_key=vapid[1])
    page = stubbed_page(context, subscription)
    refused = policy_refusals(page)
    open_inbox(page, gateway, "alice")

    page.get_by_role("button", name=ENABLE).click()

    toggle = page.get_by_role("button", name=DISABLE)
    expect(toggle).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("status")).to_have_text("Browser notifications are on.")
    calls = page.evaluate("window.subscribeCalls")
    assert calls == [{"userVisibleOnly": True, "key": list(b64url_decode(vapid[1]))}]
    [device] = devices(gateway, "alice")
    assert device["kind"] == "web"
    assert device["label"] == "Chrome on Linux"
    known = json.loads(page.evaluate("localStorage.getItem('kai-inbox-push-devices')"))
    assert known == {subscription.endpoint: device["id"]}
    assert axe_violations(page) == []

    toggle.click()

    expect(page.get_by_role("button", name=ENABLE)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("status")).to_have_text("Browser notifications are off.")
    assert devices(gateway, "alice") == []
    assert page.evaluate("window.unsubscribed") == 1
    assert page.evaluate("localStorage.getItem('kai-inbox-push-devices')") == "{}"
    assert refused == []


def test_without_web_push_configured_there_is_no_control(settings: Settings, browser: Browser) -> None:
    """Given no VAPID key on the server, then the page asks for it, gets a 404 and shows no
    control for browser notifications."""
    with LiveServer(create_app(settings)) as server:
        context = browser.new_context()  # closed first: the server waits for its stream
        page = context.new_page()
        try:
            with page.expect_response(lambda r: r.url.endswith("/api/push/vapid-public-key")) as asked:
                open_inbox(page, server, "alice")
            assert asked.value.status == 404
            expect(page.locator("#push")).to_be_hidden()
            assert page.get_by_role("button", name=ENABLE).count() == 0
        finally:
            context.close()


def test_the_service_worker_shows_what_the_push_worker_sends(
    gateway: LiveServer,
    push_settings: Settings,
    fleet: Callable[..., Fleet],
    context: BrowserContext,
    push_service: PushService,
    vapid: tuple[str, str],
) -> None:
    """Given Alice's browser enabled in an inbox the product opened with its own base URL,
    when a push is sent to her through the API, then the push worker delivers it to her
    browser's push service, and that payload, handed to the service worker as a push, shows a
    notification with its title, body, icon and tag, whose link resolves against the product's
    base; a push without JSON shows a notification still (the subscription promised it)."""
    fleet(push_settings, [Channel.PUSH])
    subscription = push_service.subscribe(application_server_key=vapid[1])
    page = stubbed_page(context, subscription)
    open_inbox(page, gateway, "alice", "&base=https://app.example.test/billing/")
    page.get_by_role("button", name=ENABLE).click()
    expect(page.get_by_role("button", name=DISABLE)).to_be_visible(timeout=UI_TIMEOUT_MS)
    script = page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.scriptURL)")
    assert script == f"{gateway.url}/inbox-sw.js?base=https%3A%2F%2Fapp.example.test%2Fbilling%2F"

    sent = httpx.post(
        f"{gateway.url}/api/messages/push",
        json={
            "userId": "alice",
            "title": "Invoice 7 is due",
            "body": "Pay it by Friday",
            "url": "/billing/invoices/7",
            "icon": "https://cdn.example.test/kai.png",
            "topic": "invoice-7",
        },
        headers=SERVER,
    )
    assert sent.status_code == 202, sent.text
    [delivered] = push_service.wait_for(1, timeout=UI_TIMEOUT_MS / 1000)
    assert delivered.subscription_id == subscription.id

    deliver_push(context, page, gateway.url, f"{gateway.url}/inbox", json.dumps(delivered.payload))

    [invoice] = shown_notifications(page, 1)
    assert invoice == {
        "title": "Invoice 7 is due",
        "body": "Pay it by Friday",
        "icon": "https://cdn.example.test/kai.png",
        "tag": "invoice-7",
        "data": {"url": "https://app.example.test/billing/invoices/7"},
    }

    deliver_push(context, page, gateway.url, f"{gateway.url}/inbox", "not JSON")
    untitled = {"title": "New notification", "body": "not JSON", "icon": "", "tag": "", "data": {"url": None}}
    assert untitled in shown_notifications(page, 2)
