"""The starter set's content, read from ``starter.toml`` beside this module: for every
built-in event type, an email and an in-app template (keyed by the event type), the example
data an event of that type carries, and the rule that sends both."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from shared.channels import Channel
from shared.events.rules import RuleInput
from shared.templates.store import TemplateInput

#: Where the content lives, beside this module.
CONTENT_FILE = "starter.toml"
#: The marker in the HTML layout that each email's HTML body replaces.
LAYOUT_CONTENT = "%CONTENT%"
#: How starter rules are named: the prefix and the event type (names identify them on reinstall).
RULE_NAME_PREFIX = "Starter: "
#: The channels every starter rule sends on; email reaches users whose address is known.
CHANNELS = (Channel.EMAIL, Channel.IN_APP)


@dataclass(frozen=True)
class StarterEvent:
    """One event type's share of the starter set."""

    event_type: str
    example: dict[str, Any]
    critical: bool
    email: TemplateInput
    in_app: TemplateInput

    @property
    def templates(self) -> tuple[TemplateInput, TemplateInput]:
        return self.email, self.in_app

    @property
    def rule(self) -> RuleInput:
        return RuleInput(
            name=f"{RULE_NAME_PREFIX}{self.event_type}",
            event_type=self.event_type,
            channels=[c.value for c in CHANNELS],
            template_key=self.event_type,
            critical=self.critical,
        )


def load() -> tuple[StarterEvent, ...]:
    """The starter set, in the order of the content file."""
    raw = tomllib.loads(resources.files(__package__).joinpath(CONTENT_FILE).read_text("utf-8"))
    layout = str(raw["layout"]["html"]).strip()
    return tuple(_event(entry, layout) for entry in raw["event"])


def _event(entry: dict[str, Any], layout: str) -> StarterEvent:
    event_type = str(entry["type"])
    example = dict(entry["example"])
    email = dict(entry["email"])
    html = layout.replace(LAYOUT_CONTENT, str(email.pop("html")).strip())
    return StarterEvent(
        event_type=event_type,
        example=example,
        critical=bool(entry.get("critical", False)),
        email=_template(event_type, Channel.EMAIL, {**email, "html": html}, example),
        in_app=_template(event_type, Channel.IN_APP, dict(entry["in_app"]), example),
    )


def _template(key: str, channel: Channel, parts: dict[str, Any], example: dict[str, Any]) -> TemplateInput:
    cleaned = {name: str(text).strip() for name, text in parts.items()}
    return TemplateInput(key=key, channel=channel.value, sample_data=example, **cleaned)
