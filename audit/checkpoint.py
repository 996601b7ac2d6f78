"""Checkpoints: the tree's size and root, signed with Ed25519 as a C2SP signed note.

The body is a C2SP `tlog-checkpoint` (https://c2sp.org/tlog-checkpoint): the origin line, the
tree size in decimal, the base64 root hash, each ending in a newline. The note
(https://c2sp.org/signed-note) is the body, a blank line, and one signature line
`— <key name> <base64(key id ‖ Ed25519 signature of the body)>`, where the key id is the first
four bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key). The key name is the log's origin.

Keys travel as the strings Go's golang.org/x/mod/sumdb/note reads and writes:
- the verifier key `<name>+<key id in 8 hex digits>+<base64(0x01 ‖ 32-byte public key)>`, which
  is all anyone needs to check the log;
- the signer key `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ 32-byte seed)>`, kept in a file.

Written by hand: C2SP notes are a few lines of text, and there is no well-kept Python library for
them; the signature itself is `cryptography`'s Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ED25519 = 0x01
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
# C2SP signed-note: a key name is non-empty, without Unicode spaces or "+".
_KEY_NAME = re.compile(r"[^\s+]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(ValueError):
    """A checkpoint or key that is malformed or does not verify; the message says which check failed."""


def strict_b64decode(text: str, *, what: str) -> bytes:
    """Decode standard base64 (RFC 4648 §4), refusing any other spelling of the same bytes.

    Python's decoder ignores stray bits in the last character; re-encoding and comparing makes
    every altered character an error, which an altered export or note must be.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{what} is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def b64(data: bytes) -> str:
    """Return standard base64 of `data`, as notes and proofs carry hashes."""
    return base64.b64encode(data).decode("ascii")


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte key id of an Ed25519 key, as C2SP signed-note derives it."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> str:
    if not _KEY_NAME.fullmatch(name):
        raise CheckpointError("a key name must be non-empty, without spaces or '+'")
    return name


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its size and its root hash."""

    origin: str
    tree_size: int
    root_hash: bytes

    def body(self) -> str:
        """Return the C2SP tlog-checkpoint text that the signature covers."""
        return f"{self.origin}\n{self.tree_size}\n{b64(self.root_hash)}\n"


@dataclass(frozen=True)
class NoteVerifier:
    """Checks checkpoints signed by one key; built from its verifier key string."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Read a verifier key `<name>+<hex key id>+<base64(0x01 ‖ public key)>`."""
        # At most three parts: the base64 key may itself hold "+" (as Go's note package reads it).
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a verifier key has three parts: name+keyid+key")
        name, hex_id, encoded = parts
        _check_name(name)
        data = strict_b64decode(encoded, what="the verifier key")
        if len(data) != 33 or data[0] != ED25519:
            raise CheckpointError("the verifier key is not an Ed25519 key (type 0x01 and 32 bytes)")
        public_key = data[1:]
        if hex_id.lower() != key_id(name, public_key).hex():  # Go's parser reads either case
            raise CheckpointError("the verifier key's id does not match its name and key")
        return cls(name, key_id(name, public_key), public_key)

    def vkey(self) -> str:
        """Return this key as a verifier key string."""
        return f"{self.name}+{self.key_id.hex()}+{b64(bytes([ED25519]) + self.public_key)}"

    def open(self, note: str) -> Checkpoint:
        """Return the checkpoint a signed note holds, after checking it is signed by this key.

        Refuses, naming what is wrong: a note that is not UTF-8 text in the signed-note shape, a
        body that is not a checkpoint of this log (origin = key name), and a note with no valid
        signature of this key. A signature by this key that fails to verify rejects the note.
        """
        body, signatures = _split_note(note)
        verified = False
        for signer_name, signature in signatures:
            if signer_name != self.name or signature[:4] != self.key_id:
                continue  # another key's signature: C2SP says ignore it
            try:
                Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature[4:], body.encode())
            except InvalidSignature:
                raise CheckpointError(f"the signature of {self.name} does not verify") from None
            verified = True
        if not verified:
            raise CheckpointError(f"the note carries no signature of {self.name}")
        checkpoint = _parse_body(body)
        if checkpoint.origin != self.name:
            raise CheckpointError("the checkpoint's origin is not this key's log")
        return checkpoint


@dataclass(frozen=True)
class NoteSigner:
    """Signs checkpoints with one Ed25519 key, named by the log's origin."""

    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """Make a new key for the log `name`."""
        return cls(_check_name(name), Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, skey: str) -> NoteSigner:
        """Read a signer key `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`."""
        if not skey.startswith(_PRIVATE_PREFIX):
            raise CheckpointError(f"a signer key starts with {_PRIVATE_PREFIX}")
        parts = skey.strip()[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a signer key has three parts after PRIVATE+KEY+: name+keyid+key")
        name, hex_id, encoded = parts
        data = strict_b64decode(encoded, what="the signer key")
        if len(data) != 33 or data[0] != ED25519:
            raise CheckpointError("the signer key is not an Ed25519 key (type 0x01 and 32 bytes)")
        signer = cls(_check_name(name), Ed25519PrivateKey.from_private_bytes(data[1:]))
        if signer.verifier().key_id.hex() != hex_id.lower():
            raise CheckpointError("the signer key's id does not match its name and key")
        return signer

    def skey(self) -> str:
        """Return this key as a signer key string (secret: keep it in a 0600 file)."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier().key_id.hex()}+{b64(bytes([ED25519]) + seed)}"

    def verifier(self) -> NoteVerifier:
        """Return the verifier of this key."""
        public_key = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return NoteVerifier(self.name, key_id(self.name, public_key), public_key)

    def sign(self, tree_size: int, root_hash: bytes) -> str:
        """Return the signed note of the checkpoint (tree_size, root_hash) of this log."""
        body = Checkpoint(self.name, tree_size, root_hash).body()
        signature = self.verifier().key_id + self.private_key.sign(body.encode())
        return f"{body}\n{_SIGNATURE_PREFIX}{self.name} {b64(signature)}\n"


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise CheckpointError("a signed note holds no control characters but newlines")
    body, separator, signature_block = note.rpartition("\n\n")
    if not separator or not signature_block.endswith("\n"):
        raise CheckpointError("a signed note is text, a blank line, then signature lines each ending in a newline")
    signatures: list[tuple[str, bytes]] = []
    for line in signature_block[:-1].split("\n"):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointError("a signature line starts with an em dash and a space")
        fields = line[len(_SIGNATURE_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise CheckpointError("a signature line is '— <key name> <base64 signature>'")
        name, encoded = fields
        signature = strict_b64decode(encoded, what="a signature")
        if len(signature) < 5:
            raise CheckpointError("a signature is a 4-byte key id and the signature itself")
        signatures.append((_check_name(name), signature))
    return body + "\n", signatures


def _parse_body(body: str) -> Checkpoint:
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint's body is its origin, tree size and root hash, each on a line")
    origin, size, root = lines[:3]
    if not origin:
        raise CheckpointError("a checkpoint's origin line is empty")
    if not _DECIMAL.fullmatch(size):
        raise CheckpointError("a checkpoint's tree size is a decimal number without leading zeros")
    root_hash = strict_b64decode(root, what="the root hash")
    if len(root_hash) != 32:
        raise CheckpointError("the root hash is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise CheckpointError("a checkpoint's extension lines must not be empty")
    return Checkpoint(origin, int(size), root_hash)
