"""Real protocol peers (SMTP, Twilio API, webhook receiver) on 127.0.0.1 for tests."""
