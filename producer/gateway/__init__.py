"""The HTTP gateway: a small Starlette app that authenticates, validates and enqueues."""
