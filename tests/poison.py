"""A poison message: one whose every attempt crashes the actor, however often it is retried.

It is pinned to a template version that is not in the database (a buggy producer, or a
restore that lost it), so the render stage fails unexpectedly each time: the message is
retried, then failed and dead-lettered, and the queue behind it keeps flowing.
"""

from __future__ import annotations

from shared.payloads import Stored, Templated, TemplateRef

POISON_PAYLOAD = Stored(Templated(template=TemplateRef("poison-missing", "en", 999_999, {}), type="info"))
