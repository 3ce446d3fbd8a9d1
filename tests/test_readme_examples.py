"""The README's Python examples, run as written against the real services."""

from __future__ import annotations

from typing import Any

from producer.service import NotificationService
from shared.config import Settings
from tests.conftest import Queues
from tests.readme import example_after


def test_send_many_example(settings: Settings, queues: Queues) -> None:
    """The send_many example: two items queued, the bad phone number answered alone."""
    namespace: dict[str, Any] = {"notification_service": NotificationService(settings)}

    exec(example_after("Many messages at once go through `send_many`"), namespace)

    results = namespace["results"]
    assert [sorted(r) for r in results] == [["id", "status"], ["error"], ["id", "status"]]
    assert results[1]["error"]["code"] == "validation_error"
    assert results[1]["error"]["details"][0]["field"] == "to"
    assert queues.depths(["email", "sms", "in_app"]) == {"email": 1, "sms": 0, "in_app": 1}
