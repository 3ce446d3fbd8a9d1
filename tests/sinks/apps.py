"""The push services and chat tools together, as the push and chat channels' tests meet them:
a web push service, FCM, APNs (HTTP/2 over TLS), Slack's Web API and webhooks, and Teams
webhooks, each a real protocol peer on loopback (see their modules), with the settings that
point the workers at them and a user who has one device of each kind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from shared.db.rls import system_scope
from shared.push_targets import DeviceInput, SubscriptionInput, register
from tests.sinks.apns_peer import ApnsPeer
from tests.sinks.fcm_peer import FcmPeer
from tests.sinks.push_service import PushService, Subscription
from tests.sinks.slack_peer import SlackPeer
from tests.sinks.teams_peer import TeamsPeer
from workers.providers.webpush import generate_vapid_keys

#: The user whose three devices (a browser, an Android and an iOS app) the push tests reach.
PUSH_USER = "user-with-devices"


@dataclass
class Devices:
    browser: Subscription
    android: str
    iphone: str


@dataclass
class AppPeers:
    push: PushService
    fcm: FcmPeer
    apns: ApnsPeer
    slack: SlackPeer
    teams: TeamsPeer
    vapid: tuple[str, str] = field(default_factory=generate_vapid_keys)

    @classmethod
    @contextmanager
    def started(cls) -> Iterator[AppPeers]:
        with ExitStack() as stack:
            yield cls(
                stack.enter_context(PushService()),
                stack.enter_context(FcmPeer()),
                stack.enter_context(ApnsPeer()),
                stack.enter_context(SlackPeer()),
                stack.enter_context(TeamsPeer()),
            )

    def reset(self) -> None:
        """Between tests sharing the peers: no faults, nothing received."""
        for peer in (self.push, self.fcm, self.apns, self.slack, self.teams):
            peer.reset()

    def settings(self) -> dict[str, str]:
        """The environment that points every push service and chat tool at these peers."""
        return {
            "VAPID_PRIVATE_KEY": self.vapid[0],
            "VAPID_SUBJECT": "mailto:ops@example.com",
            "FCM_SERVICE_ACCOUNT": json.dumps(self.fcm.service_account()),
            "FCM_API_BASE": self.fcm.base_url,
            "APNS_KEY": self.apns.signing_key(),
            "APNS_KEY_ID": self.apns.key_id,
            "APNS_TEAM_ID": self.apns.team_id,
            "APNS_TOPIC": "com.example.app",
            "APNS_API_BASE": self.apns.base_url,
            "APNS_CA_FILE": str(self.apns.ca_file),
            "SLACK_BOT_TOKEN": self.slack.token,
            "SLACK_API_BASE": self.slack.api_base,
        }

    def register_devices(self, database_url: str, user_id: str = PUSH_USER) -> Devices:
        """A browser, an Android phone and an iPhone of ``user_id``, registered oldest first."""
        devices = Devices(
            self.push.subscribe(application_server_key=self.vapid[1]),
            self.fcm.register(),
            self.apns.register(),
        )
        given = [
            SubscriptionInput.model_validate(devices.browser.as_json()),
            DeviceInput(platform="android", token=devices.android),
            DeviceInput(platform="ios", token=devices.iphone),
        ]
        for device in given:
            with system_scope(database_url) as session:
                register(session, user_id, device)
        return devices

    def pushes_received(self) -> int:
        """Pushes every one of the user's three devices got."""
        return min(len(self.push.deliveries), len(self.fcm.messages), len(self.apns.notifications))

    def fail_pushes(self, status: int, times: int | None) -> None:
        """Every device's service refuses the next ``times`` pushes (None: all) with ``status``
        (503: temporarily, 400: for good)."""
        if times is None:
            self.push.fail_always(status)
        else:
            self.push.fail_next(status, times=times)
        self.fcm.fail_next(status, {503: "UNAVAILABLE", 400: "INVALID_ARGUMENT"}[status], times=times)
        self.apns.fail_next(status, {503: "ServiceUnavailable", 400: "BadTopic"}[status], times=times)
