"""The public Python API of KAI Messaging.

from producer import notification_service
message_id = notification_service.send_email(to=..., subject=..., text=...)
notification_service.get_status(message_id)["status"]
"""

from producer.service import NotificationService

#: The process-wide service, configured from the environment on first use.
notification_service = NotificationService()

__all__ = ["NotificationService", "notification_service"]
