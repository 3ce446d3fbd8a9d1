"""Name lookup for compiled templates: keys of objects and items of lists, never attributes.

pybars resolves every name and path segment through ``pybars._compiler.pick``, which falls
back to ``getattr`` when item access fails and the template then calls what it found. On a
string that reaches ``str.format``: ``{{name.format}}`` with data
``{"name": "{0.__init__.__globals__[sys].modules[os].environ}"}`` prints the process's
environment. The whitelist in :mod:`shared.templates.syntax` cannot see this (``format`` is
an ordinary name), so the lookup itself is replaced before anything is compiled: a name
looked up on anything but an object of the message data (a string, a number, a list) is
nothing, and ``this.length`` / ``items.0`` keep working on lists through pybars' own
``resolve``.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.templates.context import Missing

_sealed = False
#: pybars' own scope type, known once :func:`seal` has imported pybars (importing it builds
#: its grammar, which processes that never compile a template should not pay for).
_scope_type: type[Any] = dict
_seal_lock = threading.Lock()


def pick(context: Any, name: Any, default: Any = None) -> Any:
    """``context[name]`` for the data's own objects and pybars scopes; otherwise ``default``."""
    if isinstance(context, dict | Missing | _scope_type):
        return context.get(name, default)
    if isinstance(context, list) and isinstance(name, str) and name.isdigit():
        index = int(name)
        return context[index] if index < len(context) else default
    return default


def seal() -> None:
    """Make pybars look names up with :func:`pick` from now on, in this process."""
    global _sealed, _scope_type
    with _seal_lock:
        if not _sealed:
            import pybars._compiler

            _scope_type = pybars._compiler.Scope
            pybars._compiler.pick = pick
            _sealed = True
