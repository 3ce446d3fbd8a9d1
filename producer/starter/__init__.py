"""The starter set: templates and rules for every built-in event type, so events produce
messages before anyone writes their own. ``kai-messaging starter`` installs it; ``kai-messaging
run`` does on the embedded SQLite database."""

from producer.starter.install import (
    Item,
    StarterReport,
    install_on_embedded_database,
    install_starter,
)

__all__ = ["Item", "StarterReport", "install_on_embedded_database", "install_starter"]
