"""Event types the product ships rules and templates for. Any other string is accepted as
an event type too: it simply matches no rule until someone writes one."""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    USER_REGISTERED = "user.registered"
    USER_PASSWORD_RESET_REQUESTED = "user.password_reset_requested"
    USER_EMAIL_CHANGED = "user.email_changed"
    SECURITY_ALERT = "security.alert"
    SECURITY_NEW_LOGIN = "security.new_login"
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_RENEWED = "subscription.renewed"
    SUBSCRIPTION_CANCELLED = "subscription.cancelled"
    SUBSCRIPTION_PAYMENT_FAILED = "subscription.payment_failed"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    ORDER_CREATED = "order.created"
    ORDER_SHIPPED = "order.shipped"
    ORDER_DELIVERED = "order.delivered"
    MESSAGE_RECEIVED = "message.received"
