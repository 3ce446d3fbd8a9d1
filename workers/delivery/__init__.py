"""The delivery pipeline every channel runs (``pipeline.py``), its retry rules
(``retry.py``) and the per-recipient hourly limits (``recipient_limits.py``)."""
