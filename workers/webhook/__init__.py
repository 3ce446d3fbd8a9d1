"""The webhook pool's own side of the webhook feature: the pipeline with its endpoint stages
(``pipeline.py``), the per-endpoint circuit breaker (``breaker.py``) and the notices sent
when an endpoint is disabled (``alerts.py``). What the producer shares with it (endpoints,
fan-out, signing, ordering, replay) is in :mod:`shared.webhooks`; the HTTP call itself is
:mod:`workers.providers.http`."""
