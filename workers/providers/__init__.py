"""Providers: the edge where a message leaves the service (SMTP, Twilio, HTTP, the inbox).

``base.py`` holds the contract; one module per provider implements it, and ``outbox.py``
is the embedded default that writes email and SMS to files instead of sending them.
Providers know the outside world only: they are handed what to send and never read or
write the database themselves.
"""
