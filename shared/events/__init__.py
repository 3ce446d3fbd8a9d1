"""Event-based notifications: events, the rules they match, and where users are reached."""
