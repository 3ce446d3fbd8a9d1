"""Endpoint secrets at rest: Fernet-encrypted when WEBHOOK_ENCRYPTION_KEYS is set.

A database dump or a read replica then holds no usable signing secret. Several keys may be
given (newest first): values are encrypted with the first and decrypted with any, so the
key can be rotated (``cryptography``'s MultiFernet). Without keys, values are stored as they
are and marked by their ``whsec_`` prefix, which keeps embedded development key-free.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import ConfigError

#: Marks an encrypted value in the database.
ENCRYPTED_PREFIX = "fernet:"


def _box(keys: Sequence[str]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ConfigError("WEBHOOK_ENCRYPTION_KEYS must be Fernet keys (Fernet.generate_key())") from exc


def seal(plaintext: str, keys: Sequence[str]) -> str:
    """The value to store for ``plaintext``."""
    if not keys:
        return plaintext
    return ENCRYPTED_PREFIX + _box(keys).encrypt(plaintext.encode()).decode()


def unseal(stored: str, keys: Sequence[str]) -> str:
    """The secret a stored value holds; ConfigError when no configured key opens it."""
    if not stored.startswith(ENCRYPTED_PREFIX):
        return stored
    if not keys:
        raise ConfigError("an endpoint secret is encrypted but WEBHOOK_ENCRYPTION_KEYS is not set")
    try:
        return _box(keys).decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
    except InvalidToken:
        raise ConfigError("no key in WEBHOOK_ENCRYPTION_KEYS opens an endpoint secret") from None
