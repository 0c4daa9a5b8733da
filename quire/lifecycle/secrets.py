"""Sealing per-tenant connection settings with AES-256-GCM, under a keyring that can rotate.

The keyring comes from `Settings.secrets_keyring()`: comma-separated `<key id>:<32 bytes,
urlsafe base64>`. The first key seals; every key opens, so rotating is "put the new key first,
re-seal every row (`quire.lifecycle.connections.rotate`), then drop the old key". Each sealed
value is stored with the id of the key that sealed it, so opening never has to guess.

A sealed value is a fresh 12-byte random nonce followed by the ciphertext and its 16-byte tag.
The associated data (authenticated, not stored) binds a ciphertext to where it belongs (for a
connection: `"<tenant id>:<provider>"`): a row copied to another tenant or provider does not
open, it fails exactly like a tampered one.

Errors name the problem and the key's id, never a key's bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from quire.settings import Settings

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per seal (2^-32 collision risk only after 2^32)
TAG_BYTES = 16
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")  # fits Connection.key_id (32)
URLSAFE_B64 = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class UnreadableSecret(RuntimeError):
    """A sealed value cannot be opened: its key is not in the keyring, or the bytes (or the
    associated data they were sealed with) are not what was sealed."""


@dataclass(frozen=True)
class Sealed:
    """What `Keyring.seal` gives: store both, `open_sealed` needs both."""

    key_id: str
    sealed: bytes  # nonce + ciphertext + tag


@dataclass(frozen=True, repr=False)
class Keyring:
    """The keys by id, in order: the first seals, every one opens. (No repr: keys stay out of
    logs and tracebacks.)"""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("the secrets keyring holds no key")
        ids = [key_id for key_id, _ in self.keys]
        for position, (key_id, key) in enumerate(self.keys, 1):
            if not KEY_ID.match(key_id):
                # Not shown: a key pasted where its id goes would end up in a log.
                raise ValueError(
                    f"secrets keyring: the id of key {position} must be 1-32 letters, digits,"
                    " '.', '_' or '-', starting with a letter or digit"
                )
            if len(key) != KEY_BYTES:
                raise ValueError(
                    f"secrets keyring: key {key_id!r} is {len(key)} bytes; AES-256 needs "
                    f"{KEY_BYTES}"
                )
            if ids.count(key_id) > 1:
                raise ValueError(f"secrets keyring: key id {key_id!r} appears more than once")

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """`"<key id>:<urlsafe base64 of 32 bytes>,..."` (padding optional, spaces around
        entries ignored), or a ValueError saying which entry is wrong and why."""
        entries = [entry.strip() for entry in text.split(",")]
        if not any(entries):
            raise ValueError("the secrets keyring is empty: expected '<key id>:<key>,...'")
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(entries, 1):
            key_id, colon, encoded = entry.partition(":")
            key_id, encoded = key_id.strip(), encoded.strip()
            if not colon or not key_id or not encoded:
                raise ValueError(
                    f"secrets keyring: entry {position} is not '<key id>:<urlsafe base64 key>'"
                )
            if not KEY_ID.match(key_id):
                raise ValueError(
                    f"secrets keyring: the id of entry {position} must be 1-32 letters, digits,"
                    " '.', '_' or '-', starting with a letter or digit"
                )
            keys.append((key_id, _decode_key(key_id, encoded)))
        return cls(tuple(keys))

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The keyring `QUIRE_SECRETS_KEYS` names (or the one generated into the data dir)."""
        return cls.parse(settings.secrets_keyring())

    @staticmethod
    def generate_entry(key_id: str) -> str:
        """A new `<key id>:<key>` entry to put first in `QUIRE_SECRETS_KEYS` before rotating."""
        key = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
        entry = f"{key_id}:{key}"
        Keyring.parse(entry)  # the id is checked like any other
        return entry

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    @property
    def current_key_id(self) -> str:
        """The key that seals (the first)."""
        return self.keys[0][0]

    def seal(self, plaintext: bytes, *, associated: bytes) -> Sealed:
        """`plaintext` sealed with the current key under a fresh random nonce."""
        key_id, key = self.keys[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        return Sealed(key_id, nonce + AESGCM(key).encrypt(nonce, plaintext, associated))

    def open_sealed(self, key_id: str, sealed: bytes, *, associated: bytes) -> bytes:
        """The plaintext `seal` was given, or UnreadableSecret (unknown key, wrong key,
        tampered bytes, or other associated data than the seal's)."""
        key = dict(self.keys).get(key_id)
        if key is None:
            raise UnreadableSecret(
                f"sealed with key {key_id!r}, which is not in the keyring (keys: "
                f"{', '.join(self.key_ids)}); was it dropped before the rotation finished?"
            )
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise UnreadableSecret(
                f"a value sealed with key {key_id!r} is {len(sealed)} bytes: too short to be one"
            )
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            raise UnreadableSecret(
                f"a value sealed with key {key_id!r} does not open: the key is not the one that "
                "sealed it, the bytes were altered, or it belongs to another tenant or provider"
            ) from None


def _decode_key(key_id: str, encoded: str) -> bytes:
    if not URLSAFE_B64.match(encoded):
        raise ValueError(f"secrets keyring: key {key_id!r} is not urlsafe base64")
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"secrets keyring: key {key_id!r} is not urlsafe base64") from None
