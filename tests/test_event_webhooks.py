"""An event reaches subscribed webhook endpoints through the real events actor: the rules'
messages and the endpoints' signed deliveries come from one ``process_event`` call."""

from __future__ import annotations

import json
from collections.abc import Callable

from standardwebhooks import Webhook

from producer import event_notification_service
from producer.events import EventNotificationService
from producer.service import NotificationService
from shared.config import Settings
from tests.conftest import Fleet, final_status
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until
from tests.webhook_events import create_endpoint


def test_an_event_fans_out_to_subscribed_endpoints_only(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given two endpoints, one subscribed to order.* and one to invoices only, when an
    order.created event is processed, then only the first receives it, signed with its own
    secret, as {type, timestamp, data}; the other receives nothing."""
    assert event_notification_service is not None
    with WebhookReceiver("whsec_" + "A" * 40) as orders, WebhookReceiver("whsec_" + "B" * 40) as invoices:
        orders_id, orders_secret = create_endpoint(settings, orders.url, eventTypes=["order.*"])
        create_endpoint(settings, invoices.url, eventTypes=["invoice.paid"])
        fleet(settings, events=True)
        events = EventNotificationService(settings)

        event_id = events.process_event("order.created", user_id=None, data={"orderId": "o-1", "amount": 42})

        delivery = orders.wait_for(1, timeout=30)[0]
        Webhook(orders_secret).verify(delivery.body, delivery.headers)  # raises if not signed with it
        body = json.loads(delivery.body)
        assert body["type"] == "order.created"
        assert body["data"] == {"orderId": "o-1", "amount": 42}
        assert "timestamp" in body
        service = NotificationService(settings)
        assert final_status(service, delivery.headers["webhook-id"])["status"] == "delivered"

        wait_until(
            lambda: events.get_event(event_id)["status"] == "processed",
            timeout=20,
            message="event not processed",
        )
        assert invoices.deliveries == []
        assert orders_id
