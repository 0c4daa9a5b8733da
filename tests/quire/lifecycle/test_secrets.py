"""Sealing connection settings: AES-256-GCM under a keyring whose first key seals and every key
opens, bound to its tenant and provider by the associated data; a wrong key, altered bytes or
another tenant's associated data do not open, and a malformed keyring says what is wrong
without ever showing a key."""

from __future__ import annotations

import base64

import pytest

from quire.lifecycle.secrets import NONCE_BYTES, Keyring, UnreadableSecret
from quire.settings import Settings


def entry(key_id: str, fill: int) -> str:
    """A keyring entry with a recognisable 32-byte key (fill byte repeated)."""
    return f"{key_id}:{base64.urlsafe_b64encode(bytes([fill]) * 32).decode()}"


OLD = entry("k1", 1)
NEW = entry("k2", 2)
KEYRING = Keyring.parse(OLD)  # the keyring the lifecycle tests seal with
ROTATED = Keyring.parse(f"{NEW},{OLD}")  # a new key put first, the old one still opening

TENANT_A = b"0b9f6c2e-0000-4000-8000-00000000000a:identity"
TENANT_B = b"0b9f6c2e-0000-4000-8000-00000000000b:identity"


def test_a_sealed_value_opens_to_what_was_sealed_and_names_the_key_that_sealed_it():
    sealed = KEYRING.seal(b'{"token": "s3cret"}', associated=TENANT_A)
    assert sealed.key_id == "k1"
    assert b"s3cret" not in sealed.sealed
    assert KEYRING.open_sealed("k1", sealed.sealed, associated=TENANT_A) == b'{"token": "s3cret"}'


def test_each_seal_draws_a_fresh_nonce_so_equal_settings_never_look_alike():
    first = KEYRING.seal(b"same", associated=TENANT_A).sealed
    second = KEYRING.seal(b"same", associated=TENANT_A).sealed
    assert first[:NONCE_BYTES] != second[:NONCE_BYTES]
    assert first != second


def test_another_tenants_associated_data_does_not_open_a_ciphertext():
    sealed = KEYRING.seal(b"tenant a's token", associated=TENANT_A)
    with pytest.raises(UnreadableSecret, match="another tenant or provider"):
        KEYRING.open_sealed("k1", sealed.sealed, associated=TENANT_B)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_a_tampered_byte_anywhere_is_refused(where):
    sealed = bytearray(KEYRING.seal(b"a longer plaintext", associated=TENANT_A).sealed)
    position = {"nonce": 0, "ciphertext": NONCE_BYTES + 1, "tag": len(sealed) - 1}[where]
    sealed[position] ^= 0x01
    with pytest.raises(UnreadableSecret, match="does not open"):
        KEYRING.open_sealed("k1", bytes(sealed), associated=TENANT_A)


def test_a_truncated_value_is_refused_as_too_short():
    with pytest.raises(UnreadableSecret, match="too short"):
        KEYRING.open_sealed("k1", b"\x00" * 20, associated=TENANT_A)


def test_a_different_key_under_the_same_id_does_not_open():
    impostor = Keyring.parse(entry("k1", 9))
    sealed = KEYRING.seal(b"x", associated=TENANT_A)
    with pytest.raises(UnreadableSecret, match="does not open"):
        impostor.open_sealed("k1", sealed.sealed, associated=TENANT_A)


def test_a_key_id_missing_from_the_keyring_is_named_in_the_refusal():
    sealed = ROTATED.seal(b"x", associated=TENANT_A)
    with pytest.raises(UnreadableSecret, match="'k2', which is not in the keyring"):
        KEYRING.open_sealed(sealed.key_id, sealed.sealed, associated=TENANT_A)


def test_after_a_new_key_is_put_first_it_seals_and_the_old_key_still_opens():
    old = KEYRING.seal(b"sealed before the rotation", associated=TENANT_A)
    assert ROTATED.current_key_id == "k2"
    assert ROTATED.seal(b"y", associated=TENANT_A).key_id == "k2"
    opened = ROTATED.open_sealed(old.key_id, old.sealed, associated=TENANT_A)
    assert opened == b"sealed before the rotation"


def test_the_keyring_generated_into_the_data_directory_parses(tmp_path):
    settings = Settings(QUIRE_DATA_DIR=str(tmp_path))  # type: ignore[call-arg]
    keyring = Keyring.from_settings(settings)
    assert keyring.key_ids == ("k1",)
    assert Keyring.from_settings(settings).keys == keyring.keys  # generated once


def test_a_generated_entry_is_a_valid_keyring_entry():
    entry_text = Keyring.generate_entry("2026-01")
    assert Keyring.parse(f"{entry_text},{OLD}").current_key_id == "2026-01"


def test_padding_and_spaces_around_entries_are_accepted():
    unpadded = OLD.rstrip("=")
    assert Keyring.parse(f" {unpadded} , {NEW} ").key_ids == ("k1", "k2")


SECRET_KEY = base64.urlsafe_b64encode(b"\x07" * 32).decode()


@pytest.mark.parametrize(
    ("keyring", "problem"),
    [
        ("", "empty"),
        (" , ", "empty"),
        (SECRET_KEY, "entry 1 is not '<key id>:<urlsafe base64 key>'"),
        ("k1:", "entry 1 is not"),
        (f"{OLD},k2", "entry 2 is not"),
        (f"{SECRET_KEY}:{SECRET_KEY}", "the id of entry 1 must be"),
        (f"bad id:{SECRET_KEY}", "the id of entry 1 must be"),
        ("k1:not+base64/", "key 'k1' is not urlsafe base64"),
        ("k1:a", "key 'k1' is not urlsafe base64"),
        (f"k1:{base64.urlsafe_b64encode(b'short').decode()}", "is 5 bytes; AES-256 needs 32"),
        (f"{OLD},{entry('k1', 3)}", "'k1' appears more than once"),
    ],
)
def test_a_malformed_keyring_is_a_clear_value_error_that_never_shows_a_key(keyring, problem):
    with pytest.raises(ValueError, match="keyring") as refused:
        Keyring.parse(keyring)
    assert problem in str(refused.value)
    assert SECRET_KEY.rstrip("=") not in str(refused.value)
    assert OLD.split(":")[1].rstrip("=") not in str(refused.value)


def test_a_keyring_shows_its_key_ids_but_never_its_keys():
    shown = repr(ROTATED)
    assert shown == "Keyring(key_ids=('k2', 'k1'))"
