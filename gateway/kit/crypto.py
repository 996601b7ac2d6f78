"""Encryption at rest: AES-GCM under per-child data keys wrapped by a key-encryption key.

Lookup identifiers are kept as keyed hashes (a blind index) so that the database never holds
an NHS number in clear, yet the same number finds the same child.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from pydantic import TypeAdapter

from .errors import Gone

_NONCE_BYTES = 12

T = TypeVar("T")


class ChildErased(Gone):
    """The child's data key has been destroyed: nothing about them can be read or filed again."""

    def __init__(self) -> None:
        super().__init__("This child's record has been erased; nothing about them can be read or filed.")




@dataclass(frozen=True)
class DataKeyring:
    """The key-encryption key and the blind-index key, loaded once at start-up."""

    kek: bytes
    index_key: bytes

    def new_data_key(self) -> tuple[bytes, bytes]:
        """Return a fresh data key and its wrapped form (the only form ever stored)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, aes_key_wrap(self.kek, key)

    def unwrap(self, wrapped: bytes | None) -> bytes:
        """Unwrap a child's stored data key; a destroyed key means the child was erased."""
        if wrapped is None:
            raise ChildErased()
        return aes_key_unwrap(self.kek, wrapped)

    def blind_index(self, scheme: str, value: str) -> str:
        """Return the keyed hash by which an identifier is looked up."""
        message = f"{scheme}:{value}".encode()
        return hmac.new(self.index_key, message, hashlib.sha256).hexdigest()


def seal(key: bytes, plaintext: bytes, *, context: str) -> bytes:
    """Encrypt, binding the ciphertext to its row so it cannot be moved to another."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())


def unseal(key: bytes, blob: bytes, *, context: str) -> bytes:
    """Decrypt what seal() produced for the same context."""
    return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())


# One TypeAdapter per sealed type: building one compiles a validator, too slow to do per row.
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(type_: type[T]) -> TypeAdapter[T]:
    adapter: TypeAdapter[T] | None = _ADAPTERS.get(type_)
    if adapter is None:
        adapter = _ADAPTERS[type_] = TypeAdapter(type_)
    return adapter


def seal_value(key: bytes, value: T, type_: type[T], *, context: str) -> bytes:
    """Serialise a pydantic model or dataclass as JSON and seal it to its row's context.

    `context` comes from the row's model (`SealedRowMixin.context_for`), never spelled inline.
    """
    return seal(key, _adapter(type_).dump_json(value), context=context)


def unseal_value(key: bytes, blob: bytes, type_: type[T], *, context: str) -> T:
    """Unseal what seal_value() sealed for the same context, and validate it back into its type."""
    return OpenedKey(key).unseal_value(blob, type_, context=context)


class OpenedKey:
    """A data key made ready to unseal many values: one cipher object for all, not one per value."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def unseal_value(self, blob: bytes, type_: type[T], *, context: str) -> T:
        """Unseal what seal_value() sealed under this key for the same context."""
        plaintext = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
        return _adapter(type_).validate_json(plaintext)


def new_key_file() -> bytes:
    """Return the contents of a new 256-bit key file (base64, one line)."""
    return base64.b64encode(os.urandom(32)) + b"\n"


def key_from_file(contents: bytes, *, name: str) -> bytes:
    """Return the 256-bit key a key file holds, or fail naming the file."""
    key = base64.b64decode(contents.strip(), validate=True)
    if len(key) != 32:
        raise RuntimeError(f"key file {name} must hold 32 bytes, base64-encoded")
    return key

