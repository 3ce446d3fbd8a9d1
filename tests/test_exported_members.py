"""The public Python API is what the README's "Python API" section promises, and nothing is
exported by accident."""

from __future__ import annotations

import producer


def test_the_producer_package_exports_the_contract() -> None:
    from producer import EventType, event_notification_service, notification_service

    assert set(producer.__all__) == {
        "EventNotificationService",
        "EventType",
        "NotificationService",
        "event_notification_service",
        "notification_service",
    }
    assert EventType.SUBSCRIPTION_PAYMENT_FAILED == "subscription.payment_failed"
    assert EventType.USER_REGISTERED == "user.registered"
    assert callable(event_notification_service.process_event)
    assert callable(notification_service.send_email)
