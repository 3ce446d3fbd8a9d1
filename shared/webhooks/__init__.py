"""The webhook feature as both sides use it: endpoints and their secrets (``endpoints.py``,
``secretbox.py``), settings, fan-out of events to subscribed endpoints, Standard Webhooks
signing, per-key ordering and replay. Delivery itself lives in :mod:`workers.webhook`."""
