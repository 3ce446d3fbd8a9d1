"""Endpoint secrets at rest: sealed with Fernet keys, readable across a key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from shared.errors import ConfigError
from shared.webhooks.secretbox import ENCRYPTED_PREFIX, seal, unseal

SECRET = "whsec_c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3OA=="


def test_sealed_values_hide_the_secret_and_open_again() -> None:
    key = Fernet.generate_key().decode()

    stored = seal(SECRET, [key])

    assert stored.startswith(ENCRYPTED_PREFIX) and SECRET not in stored
    assert unseal(stored, [key]) == SECRET


def test_a_rotated_key_list_still_opens_old_values() -> None:
    """Given a value sealed with the old key, when a new key is put first, then it opens."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = seal(SECRET, [old])

    assert unseal(stored, [new, old]) == SECRET
    assert unseal(seal(SECRET, [new, old]), [new]) == SECRET


def test_without_keys_values_are_stored_as_they_are() -> None:
    assert seal(SECRET, []) == SECRET
    assert unseal(SECRET, []) == SECRET


@pytest.mark.parametrize(
    "keys",
    [[], [Fernet.generate_key().decode()]],
    ids=["no key configured", "a different key"],
)
def test_a_value_no_key_opens_is_a_configuration_error(keys: list[str]) -> None:
    stored = seal(SECRET, [Fernet.generate_key().decode()])

    with pytest.raises(ConfigError):
        unseal(stored, keys)


def test_a_malformed_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="Fernet"):
        seal(SECRET, ["not-a-fernet-key"])
