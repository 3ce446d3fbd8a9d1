"""Providers: the edge where a message leaves the service (SMTP, Twilio, HTTP, the database).

``base.py`` holds the contract; one module per provider implements it, and ``outbox.py``
is the embedded default that writes email and SMS to files instead of sending them.
"""
