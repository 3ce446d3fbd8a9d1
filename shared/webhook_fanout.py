"""Fan an event out to the webhook configurations subscribed to its type (placeholder)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.config import Settings


def fan_out(
    session: Session,
    settings: Settings,
    *,
    event_id: str,
    event_type: str,
    data: dict[str, Any],
    user_id: str | None,
    occurred_at: datetime,
) -> list[str]:
    """Create one webhook message per subscribed configuration; return their ids."""
    return []
