"""Fault injection: ``python -m tests.chaos`` (``make chaos``) proves the delivery guarantee.

Real ``kai-messaging worker`` pools run as subprocesses against real peers (an SMTP server, a
Twilio-compatible server, a webhook receiver) while a steady load is enqueued and faults are
injected. Afterwards every accepted message must be in a terminal state and, when its sink was
reachable, have arrived there at least once. Results go to stdout and
``bench/results/chaos.json``; the run exits non-zero if anything was lost.
"""
