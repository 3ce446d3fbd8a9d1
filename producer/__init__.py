"""The public Python API of KAI Messaging.

from producer import notification_service, event_notification_service, EventType
message_id = notification_service.send_email(to=..., subject=..., text=...)
message_id = notification_service.send_email(to=..., template="welcome", data={...})
event_id = event_notification_service.process_event(EventType.USER_REGISTERED, user_id=..., data={...})
notification_service.get_status(message_id)["status"]
"""

from producer.events import EventNotificationService
from producer.service import NotificationService
from shared.events.types import EventType

#: The process-wide services, configured from the environment on first use.
notification_service = NotificationService()
event_notification_service = EventNotificationService()

__all__ = [
    "EventNotificationService",
    "EventType",
    "NotificationService",
    "event_notification_service",
    "notification_service",
]
