"""Provider tests against the real protocol peers in tests/sinks."""
