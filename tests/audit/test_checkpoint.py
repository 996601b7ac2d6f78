"""C2SP signed-note checkpoints (audit/checkpoint.py), held against the spec reference in rfc9162.py."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy.orm import Session

from audit import (
    Actor,
    ActorType,
    AuditAction,
    AuditCheckpoint,
    AuditRecord,
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    Outcome,
    record,
    sign_checkpoint,
)
from audit.checkpoint import b64, key_id, strict_b64decode
from tests.audit import rfc9162 as rfc

ORIGIN = "gateway.test.example/audit"
ED25519 = b"\x01"
NOT_ED25519 = b"\x02"
ROOT = rfc.mth_of_data([b"first", b"second", b"third", b"fourth", b"fifth"])
OTHER_ROOT = rfc.mth_of_data([b"first", b"second", b"third", b"fourth", b"fifth", b"sixth"])

# The example key and note of Go's golang.org/x/mod/sumdb/note (its documentation and note_test.go).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE_LINE = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIGNATURE_LINE


def _fixed_key(label: str) -> NoteSigner:
    """Return a key made from a fixed seed, so that every run tests the same key strings."""
    return NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest()))


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    signer = _fixed_key("gateway test key 3")
    # '+' is a base64 digit: key strings are split at their first two '+' only, as Go's note package does.
    assert "+" in signer.skey().split("+", 4)[4] and "+" in signer.verifier().vkey().split("+", 2)[2]
    return signer


@pytest.fixture(scope="module")
def verifier(signer: NoteSigner) -> NoteVerifier:
    return signer.verifier()


def _public_key(signer: NoteSigner) -> bytes:
    return signer.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _seed(signer: NoteSigner) -> bytes:
    return signer.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _hand_signed(signer: NoteSigner, text: str, *, line_name: str | None = None) -> str:
    """Sign any text with the signer's key, as only the key's holder could: for bodies `sign` never makes."""
    signature = signer.private_key.sign(text.encode())
    name = signer.name if line_name is None else line_name
    encoded = base64.b64encode(key_id(signer.name, _public_key(signer)) + signature).decode()
    return f"{text}\n\u2014 {name} {encoded}\n"


def _signature(note: str) -> bytes:
    return base64.b64decode(note.rsplit(" ", 1)[1])


def _with_signature(note: str, signature: bytes) -> str:
    return f"{note.rsplit(' ', 1)[0]} {base64.b64encode(signature).decode()}\n"


def _flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


# --- the note the log signs ----------------------------------------------------------------------


def test_note_is_byte_for_byte_a_c2sp_checkpoint(signer: NoteSigner) -> None:
    note = signer.sign(5, ROOT)

    text = rfc.checkpoint_text(ORIGIN, 5, ROOT)
    # Ed25519 signatures are deterministic (RFC 8032), so the whole note can be rebuilt from the spec.
    expected = text + "\n" + rfc.signature_line(ORIGIN, _public_key(signer), signer.private_key.sign(text.encode()))
    assert note == expected
    lines = note.split("\n")
    assert lines[:4] == [ORIGIN, "5", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith(f"\u2014 {ORIGIN} ") and lines[5:] == [""]
    assert note.encode().count(b"\xe2\x80\x94 ") == 1  # U+2014 EM DASH in UTF-8, then a space
    assert f"\n\n\u2014 {ORIGIN} ".encode() in note.encode()
    assert Checkpoint(ORIGIN, 5, ROOT).body() == text


@pytest.mark.parametrize("size", [0, 1, 9, 10, 1025, 2**40])
def test_tree_size_is_plain_decimal(signer: NoteSigner, size: int) -> None:
    note = signer.sign(size, ROOT)

    assert note.split("\n")[1] == str(size)
    assert signer.verifier().open(note) == Checkpoint(ORIGIN, size, ROOT)


def test_reference_verifier_accepts_the_note_and_the_project_opens_it(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(5, ROOT)

    assert rfc.open_note(note, ORIGIN, _public_key(signer)) == rfc.checkpoint_text(ORIGIN, 5, ROOT)
    assert verifier.open(note) == Checkpoint(ORIGIN, 5, ROOT)


def test_reference_verifier_refuses_the_note_under_another_key(signer: NoteSigner) -> None:
    """The reference itself is no pushover: it finds no signature of a different key."""
    other = NoteSigner.generate(ORIGIN)

    with pytest.raises(rfc.NoteRejected, match="no signature from the known key"):
        rfc.open_note(signer.sign(5, ROOT), ORIGIN, _public_key(other))


def test_key_id_and_verifier_key_are_the_reference_ones(signer: NoteSigner, verifier: NoteVerifier) -> None:
    public_key = _public_key(signer)

    assert verifier.name == ORIGIN and verifier.public_key == public_key
    assert verifier.key_id == key_id(ORIGIN, public_key) == rfc.key_id(ORIGIN, public_key)
    assert len(verifier.key_id) == 4
    assert verifier.vkey() == rfc.verifier_key(ORIGIN, public_key)


def test_signer_key_string_is_name_key_id_and_seed(signer: NoteSigner) -> None:
    seed = _seed(signer)

    assert signer.skey() == (
        f"PRIVATE+KEY+{ORIGIN}+{rfc.key_id(ORIGIN, _public_key(signer)).hex()}+{b64(ED25519 + seed)}"
    )


def test_go_reference_keys_and_note_interoperate() -> None:
    go_signer = NoteSigner.parse(GO_SKEY)  # its base64 holds a '+'
    go_verifier = NoteVerifier.parse(GO_VKEY)
    public_key = go_verifier.public_key

    assert go_signer.skey() == GO_SKEY
    assert go_signer.verifier() == go_verifier
    assert go_verifier.name == "PeterNeumann" and go_verifier.key_id == bytes.fromhex("c74f20a3")
    assert go_verifier.vkey() == GO_VKEY == rfc.verifier_key("PeterNeumann", public_key)
    assert rfc.signature_line("PeterNeumann", public_key, go_signer.private_key.sign(GO_TEXT.encode())) == GO_SIGNATURE_LINE
    assert rfc.open_note(GO_NOTE, "PeterNeumann", public_key) == GO_TEXT
    # The signature verifies; the text is simply not a checkpoint.
    with pytest.raises(CheckpointError, match="a checkpoint's body is its origin, tree size and root hash"):
        go_verifier.open(GO_NOTE)
    with pytest.raises(CheckpointError, match="the signature of PeterNeumann does not verify"):
        go_verifier.open(GO_NOTE.replace("cryptography", "cryptographY"))


# --- key strings ----------------------------------------------------------------------------------


def test_signer_and_verifier_keys_round_trip(signer: NoteSigner, verifier: NoteVerifier) -> None:
    again = NoteSigner.parse(signer.skey())

    assert again.skey() == signer.skey()
    assert again.verifier() == verifier
    assert again.sign(7, ROOT) == signer.sign(7, ROOT)
    assert NoteVerifier.parse(verifier.vkey()) == verifier
    # Key files end in a newline.
    assert NoteVerifier.parse(verifier.vkey() + "\n") == verifier
    assert NoteSigner.parse(signer.skey() + "\n").skey() == signer.skey()


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2003b", "trailing "])
def test_key_names_with_spaces_or_plus_are_refused(name: str) -> None:
    with pytest.raises(CheckpointError, match=r"a key name must be non-empty, without spaces or '\+'"):
        NoteSigner.generate(name)


def _vkey_parts(verifier: NoteVerifier) -> tuple[str, str, str]:
    name, hex_id, encoded = verifier.vkey().split("+", 2)
    return name, hex_id, encoded


VKEY_CASES: list[tuple[str, Callable[[NoteVerifier], str], str]] = [
    ("two parts", lambda v: "+".join(_vkey_parts(v)[:2]), "a verifier key has three parts: name"),
    ("one part", lambda v: ORIGIN, "a verifier key has three parts: name"),
    # '+' is a base64 digit, so everything after the second '+' is the key: extra parts spoil its base64.
    ("four parts", lambda v: v.vkey() + "+extra", "the verifier key is not valid base64"),
    ("plus in the name", lambda v: "a+" + v.vkey(), "the verifier key is not valid base64"),
    ("space in the name", lambda v: "gateway test" + v.vkey()[len(ORIGIN):], "a key name must be non-empty"),
    ("empty name", lambda v: v.vkey()[len(ORIGIN):], "a key name must be non-empty"),
    ("bad base64", lambda v: v.vkey()[:-4] + "*AAA", "the verifier key is not valid base64"),
    ("urlsafe base64", lambda v: "+".join(_vkey_parts(v)[:2]) + "+" + "_" * 44, "the verifier key is not valid base64"),
    ("non-canonical base64", lambda v: v.vkey() + "=", "the verifier key is not canonical base64"),
    ("type byte 0x02", lambda v: f"{ORIGIN}+{v.key_id.hex()}+{b64(NOT_ED25519 + v.public_key)}",
     r"the verifier key is not an Ed25519 key \(type 0x01 and 32 bytes\)"),
    ("31-byte key", lambda v: f"{ORIGIN}+{v.key_id.hex()}+{b64(ED25519 + v.public_key[:31])}",
     "the verifier key is not an Ed25519 key"),
    ("no type byte", lambda v: f"{ORIGIN}+{v.key_id.hex()}+{b64(v.public_key)}", "the verifier key is not an Ed25519 key"),
    ("wrong key id", lambda v: f"{ORIGIN}+{_flip_byte(v.key_id, 3).hex()}+{_vkey_parts(v)[2]}",
     "the verifier key's id does not match its name and key"),
    ("short key id", lambda v: f"{ORIGIN}+{v.key_id.hex()[:7]}+{_vkey_parts(v)[2]}",
     "the verifier key's id does not match its name and key"),
    ("another name", lambda v: f"other.example+{v.key_id.hex()}+{_vkey_parts(v)[2]}",
     "the verifier key's id does not match its name and key"),
    ("signer key", lambda v: "PRIVATE+KEY+" + v.vkey(), "the verifier key is not valid base64"),
]


@pytest.mark.parametrize(("case", "vkey", "message"), VKEY_CASES, ids=[case[0] for case in VKEY_CASES])
def test_malformed_verifier_keys_are_refused(
    verifier: NoteVerifier, case: str, vkey: Callable[[NoteVerifier], str], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        NoteVerifier.parse(vkey(verifier))


def _skey_parts(signer: NoteSigner) -> tuple[str, str, str]:
    name, hex_id, encoded = signer.skey().removeprefix("PRIVATE+KEY+").split("+", 2)
    return name, hex_id, encoded


SKEY_CASES: list[tuple[str, Callable[[NoteSigner], str], str]] = [
    ("no prefix", lambda s: s.skey().removeprefix("PRIVATE+KEY+"), r"a signer key starts with PRIVATE\+KEY\+"),
    ("verifier key", lambda s: s.verifier().vkey(), r"a signer key starts with PRIVATE\+KEY\+"),
    ("lower-case prefix", lambda s: "private+key+" + s.skey()[12:], r"a signer key starts with PRIVATE\+KEY\+"),
    ("half a prefix", lambda s: s.skey().replace("PRIVATE+KEY+", "PRIVATE+", 1), r"a signer key starts with PRIVATE\+KEY\+"),
    ("two parts", lambda s: "PRIVATE+KEY+" + "+".join(_skey_parts(s)[:2]), r"a signer key has three parts after PRIVATE\+KEY\+"),
    ("four parts", lambda s: s.skey() + "+extra", "the signer key is not valid base64"),
    ("bad base64", lambda s: s.skey()[:-4] + "!AAA", "the signer key is not valid base64"),
    ("non-canonical base64", lambda s: s.skey() + "=", "the signer key is not canonical base64"),
    ("type byte 0x02", lambda s: f"PRIVATE+KEY+{ORIGIN}+{_skey_parts(s)[1]}+{b64(NOT_ED25519 + _seed(s))}",
     r"the signer key is not an Ed25519 key \(type 0x01 and 32 bytes\)"),
    ("33-byte seed", lambda s: f"PRIVATE+KEY+{ORIGIN}+{_skey_parts(s)[1]}+{b64(ED25519 + _seed(s) + bytes(1))}",
     "the signer key is not an Ed25519 key"),
    ("space in the name", lambda s: f"PRIVATE+KEY+gateway test+{_skey_parts(s)[1]}+{_skey_parts(s)[2]}",
     "a key name must be non-empty"),
    ("empty name", lambda s: f"PRIVATE+KEY++{_skey_parts(s)[1]}+{_skey_parts(s)[2]}", "a key name must be non-empty"),
    ("wrong key id", lambda s: f"PRIVATE+KEY+{ORIGIN}+{_flip_byte(bytes.fromhex(_skey_parts(s)[1]), 0).hex()}"
                               f"+{_skey_parts(s)[2]}", "the signer key's id does not match its name and key"),
    ("another name", lambda s: f"PRIVATE+KEY+other.example+{_skey_parts(s)[1]}+{_skey_parts(s)[2]}",
     "the signer key's id does not match its name and key"),
]


@pytest.mark.parametrize(("case", "skey", "message"), SKEY_CASES, ids=[case[0] for case in SKEY_CASES])
def test_malformed_signer_keys_are_refused(
    signer: NoteSigner, case: str, skey: Callable[[NoteSigner], str], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        NoteSigner.parse(skey(signer))


# --- notes the verifier refuses -------------------------------------------------------------------

B64_ROOT = base64.b64encode(ROOT).decode()


def _non_canonical(encoded: str) -> str:
    """Return base64 of the same bytes with a padding bit set: Python's decoder would take it."""
    assert encoded.endswith("=") and not encoded.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return encoded[:-2] + alphabet[alphabet.index(encoded[-2]) ^ 0b01] + "="


NOTE_CASES: list[tuple[str, Callable[[str], str], str]] = [
    # An altered body: the signature no longer covers it.
    ("size altered", lambda n: n.replace("\n5\n", "\n6\n", 1), f"the signature of {ORIGIN} does not verify"),
    ("root altered", lambda n: n.replace(B64_ROOT, b64(OTHER_ROOT), 1), f"the signature of {ORIGIN} does not verify"),
    ("origin altered", lambda n: n.replace(ORIGIN, "gateway.test.example/other", 1),
     f"the signature of {ORIGIN} does not verify"),
    ("extension line added", lambda n: n.replace("\n\n", "\nextension\n\n", 1), f"the signature of {ORIGIN} does not verify"),
    # An altered signature.
    ("signature byte altered", lambda n: _with_signature(n, _flip_byte(_signature(n), 20)),
     f"the signature of {ORIGIN} does not verify"),
    ("last signature byte altered", lambda n: _with_signature(n, _flip_byte(_signature(n), 67)),
     f"the signature of {ORIGIN} does not verify"),
    ("signature truncated", lambda n: _with_signature(n, _signature(n)[:-1]), f"the signature of {ORIGIN} does not verify"),
    ("key id altered", lambda n: _with_signature(n, _flip_byte(_signature(n), 0)), f"the note carries no signature of {ORIGIN}"),
    ("signature of 4 bytes", lambda n: _with_signature(n, _signature(n)[:4]),
     "a signature is a 4-byte key id and the signature itself"),
    ("empty signature", lambda n: n.rsplit(" ", 1)[0] + " \n", "a signature is a 4-byte key id and the signature itself"),
    ("non-canonical signature base64", lambda n: n.rsplit(" ", 1)[0] + " " + _non_canonical(n.rsplit(" ", 1)[1][:-1]) + "\n",
     "a signature is not canonical base64"),
    ("signature base64 without padding", lambda n: n[:-2] + "\n", "a signature is not valid base64"),
    ("urlsafe signature base64", lambda n: n[:-3] + "_=\n", "a signature is not valid base64"),
    # The note's shape.
    ("no blank line", lambda n: n.replace("\n\n", "\n", 1), "a signed note is text, a blank line, then signature lines"),
    ("no final newline", lambda n: n[:-1], "a signed note is text, a blank line, then signature lines"),
    ("trailing blank line", lambda n: n + "\n", "a signed note is text, a blank line, then signature lines"),
    ("no signature lines", lambda n: n.split("\n\n")[0] + "\n", "a signed note is text, a blank line, then signature lines"),
    ("carriage returns", lambda n: n.replace("\n", "\r\n"), "a signed note holds no control characters but newlines"),
    ("tab in the body", lambda n: n.replace("\n5\n", "\n\t5\n", 1), "a signed note holds no control characters but newlines"),
    ("NUL in the signature line", lambda n: n[:-1] + "\x00\n", "a signed note holds no control characters but newlines"),
    ("hyphens for the em dash", lambda n: n.replace("\u2014 ", "-- "), "a signature line starts with an em dash and a space"),
    ("en dash for the em dash", lambda n: n.replace("\u2014", "\u2013"), "a signature line starts with an em dash and a space"),
    ("no space after the em dash", lambda n: n.replace("\u2014 ", "\u2014"), "a signature line starts with an em dash"),
    ("a line that is no signature", lambda n: n + "trailer\n", "a signature line starts with an em dash and a space"),
    ("space in the key name", lambda n: n.replace(f"\u2014 {ORIGIN}", "\u2014 gateway test"),
     "a signature line is '\u2014 <key name> <base64 signature>'"),
    ("two spaces after the name", lambda n: n.replace(f"\u2014 {ORIGIN} ", f"\u2014 {ORIGIN}  "),
     "a signature line is '\u2014 <key name> <base64 signature>'"),
    ("plus in the key name", lambda n: n.replace(f"\u2014 {ORIGIN}", f"\u2014 {ORIGIN}+x"),
     r"a key name must be non-empty, without spaces or '\+'"),
    ("no-break space in the key name", lambda n: n.replace(f"\u2014 {ORIGIN}", f"\u2014 {ORIGIN}\u00a0x"),
     r"a key name must be non-empty, without spaces or '\+'"),
    ("empty key name", lambda n: n.replace(f"\u2014 {ORIGIN}", "\u2014 "), r"a key name must be non-empty"),
]


@pytest.mark.parametrize(("case", "alter", "message"), NOTE_CASES, ids=[case[0] for case in NOTE_CASES])
def test_altered_or_malformed_notes_are_refused(
    signer: NoteSigner, verifier: NoteVerifier, case: str, alter: Callable[[str], str], message: str
) -> None:
    note = signer.sign(5, ROOT)
    altered = alter(note)
    assert altered != note

    with pytest.raises(CheckpointError, match=message):
        verifier.open(altered)


def test_another_keys_signature_alone_is_refused(verifier: NoteVerifier) -> None:
    same_name = NoteSigner.generate(ORIGIN)
    other_name = NoteSigner.generate("other.example/log")

    for note in (same_name.sign(5, ROOT), other_name.sign(5, ROOT)):
        with pytest.raises(CheckpointError, match=f"the note carries no signature of {ORIGIN}"):
            verifier.open(note)


def test_this_keys_id_under_another_name_is_ignored(signer: NoteSigner, verifier: NoteVerifier) -> None:
    """C2SP: ignore a signature that shares the key id but not the name of a known key."""
    note = _hand_signed(signer, rfc.checkpoint_text(ORIGIN, 5, ROOT), line_name="impostor.example/log")

    with pytest.raises(CheckpointError, match=f"the note carries no signature of {ORIGIN}"):
        verifier.open(note)


def test_a_note_also_signed_by_an_unknown_key_is_accepted(signer: NoteSigner, verifier: NoteVerifier) -> None:
    witness = NoteSigner.generate("witness.example/w1")
    rotated = NoteSigner.generate(ORIGIN)  # same name, another key: unknown too
    text = rfc.checkpoint_text(ORIGIN, 5, ROOT)
    ours = signer.sign(5, ROOT).split("\n\n")[1]

    for other in (witness, rotated):
        theirs = rfc.signature_line(other.name, _public_key(other), other.private_key.sign(text.encode()))
        for note in (f"{text}\n{theirs}{ours}", f"{text}\n{ours}{theirs}"):
            assert verifier.open(note) == Checkpoint(ORIGIN, 5, ROOT)
            assert rfc.open_note(note, ORIGIN, _public_key(signer)) == text


def test_a_failing_signature_of_this_key_rejects_the_note_even_beside_a_good_one(
    signer: NoteSigner, verifier: NoteVerifier
) -> None:
    note = signer.sign(5, ROOT)
    good = note.split("\n\n")[1]
    bad = _with_signature(good, _flip_byte(_signature(good), 40))

    for signatures in (good + bad, bad + good):
        with pytest.raises(CheckpointError, match=f"the signature of {ORIGIN} does not verify"):
            verifier.open(note.split("\n\n")[0] + "\n\n" + signatures)


# --- bodies signed by the key that are still no checkpoint of this log -------------------------------

BODY_CASES: list[tuple[str, str, str]] = [
    ("another origin", f"other.example/log\n5\n{B64_ROOT}\n", "the checkpoint's origin is not this key's log"),
    ("empty origin", f"\n5\n{B64_ROOT}\n", "a checkpoint's origin line is empty"),
    ("two lines", f"{ORIGIN}\n5\n", "a checkpoint's body is its origin, tree size and root hash, each on a line"),
    ("one line", f"{ORIGIN}\n", "a checkpoint's body is its origin, tree size and root hash, each on a line"),
    ("size with a leading zero", f"{ORIGIN}\n05\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("size 00", f"{ORIGIN}\n00\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("negative size", f"{ORIGIN}\n-5\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("signed size", f"{ORIGIN}\n+5\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("spaced size", f"{ORIGIN}\n 5\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("empty size", f"{ORIGIN}\n\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("hex size", f"{ORIGIN}\n0x5\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("non-ASCII digit", f"{ORIGIN}\n\u0665\n{B64_ROOT}\n", "tree size is a decimal number without leading zeros"),
    ("31-byte root", f"{ORIGIN}\n5\n{b64(ROOT[:31])}\n", "the root hash is not 32 bytes"),
    ("33-byte root", f"{ORIGIN}\n5\n{b64(ROOT + bytes(1))}\n", "the root hash is not 32 bytes"),
    ("empty root", f"{ORIGIN}\n5\n\n", "the root hash is not 32 bytes"),
    ("hex root", f"{ORIGIN}\n5\n{ROOT.hex()}\n", "the root hash is not 32 bytes"),
    ("non-canonical root", f"{ORIGIN}\n5\n{_non_canonical(B64_ROOT)}\n", "the root hash is not canonical base64"),
    ("root with bad base64", f"{ORIGIN}\n5\n{B64_ROOT[:-2]}!=\n", "the root hash is not valid base64"),
]


@pytest.mark.parametrize(("case", "body", "message"), BODY_CASES, ids=[case[0] for case in BODY_CASES])
def test_signed_bodies_that_are_no_checkpoint_of_this_log_are_refused(
    signer: NoteSigner, verifier: NoteVerifier, case: str, body: str, message: str
) -> None:
    note = _hand_signed(signer, body)
    assert rfc.open_note(note, ORIGIN, _public_key(signer)) == body  # the signature itself is good

    with pytest.raises(CheckpointError, match=message):
        verifier.open(note)


def test_extension_lines_after_the_root_are_allowed(signer: NoteSigner, verifier: NoteVerifier) -> None:
    """c2sp.org/tlog-checkpoint: "Any following lines are extension lines, opaque and OPTIONAL"."""
    note = _hand_signed(signer, f"{ORIGIN}\n5\n{B64_ROOT}\nextension one\nextension two\n")

    assert verifier.open(note) == Checkpoint(ORIGIN, 5, ROOT)


@pytest.mark.parametrize("body", [f"{ORIGIN}\n5\n{B64_ROOT}\n\n", f"{ORIGIN}\n5\n{B64_ROOT}\n\nextension\n",
                                  f"{ORIGIN}\n5\n{B64_ROOT}\nextension\n\n"])
def test_empty_extension_lines_are_refused(signer: NoteSigner, verifier: NoteVerifier, body: str) -> None:
    """c2sp.org/tlog-checkpoint: "Extension lines, if any, MUST be non-empty"."""
    note = _hand_signed(signer, body)
    assert rfc.open_note(note, ORIGIN, _public_key(signer)) == body  # signed-note itself allows empty lines

    with pytest.raises(CheckpointError, match="a checkpoint's extension lines must not be empty"):
        verifier.open(note)


# --- base64 as notes and keys carry it -------------------------------------------------------------


def test_b64_is_standard_padded_base64() -> None:
    assert b64(b"\xff\xfe") == "//4="
    assert b64(ROOT) == B64_ROOT and len(B64_ROOT) == 44


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xff\xfe", b"\xff\xfe\xfd", ROOT])
def test_strict_b64decode_reads_what_b64_writes(data: bytes) -> None:
    assert strict_b64decode(b64(data), what="x") == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/x==", "the thing is not canonical base64"),
        ("YWJj=", "the thing is not canonical base64"),
        ("/w=", "the thing is not valid base64"),
        ("/w", "the thing is not valid base64"),
        ("-w==", "the thing is not valid base64"),
        ("/w== ", "the thing is not valid base64"),
        ("/w==\n", "the thing is not valid base64"),
        ("\u00ff/w=", "the thing is not valid base64"),
    ],
)
def test_strict_b64decode_refuses_other_spellings(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        strict_b64decode(text, what="the thing")


# --- checkpoints of the stored trail ---------------------------------------------------------------

ACTOR = Actor(ActorType.USER, "checkpoint-test@test.example", "police", "police_officer")


def _append(session: Session, count: int) -> list[bytes]:
    events = record(session, [AuditRecord(action=AuditAction.STAFF_VIEW_OPENED, actor=ACTOR, outcome=Outcome.SUCCESS,
                                          detail={"n": n}) for n in range(count)])
    return [bytes.fromhex(event.hash) for event in events]


def test_signed_checkpoint_of_the_trail_opens_to_its_rfc_root(session: Session, signer: NoteSigner) -> None:
    hashes = _append(session, 11)

    signed = sign_checkpoint(session, signer)

    assert isinstance(signed, AuditCheckpoint)
    assert (signed.tree_size, signed.root_hash) == (11, rfc.mth(hashes))
    assert signed.note == signer.sign(11, rfc.mth(hashes))
    assert rfc.open_note(signed.note, ORIGIN, _public_key(signer)) == rfc.checkpoint_text(ORIGIN, 11, rfc.mth(hashes))
    assert signer.verifier().open(signed.note) == Checkpoint(ORIGIN, 11, rfc.mth(hashes))


def test_signing_again_without_new_events_returns_the_same_checkpoint(session: Session, signer: NoteSigner) -> None:
    hashes = _append(session, 3)
    first = sign_checkpoint(session, signer)

    assert sign_checkpoint(session, signer) is first
    hashes += _append(session, 2)
    second = sign_checkpoint(session, signer)
    assert (second.tree_size, second.root_hash) == (5, rfc.mth(hashes))
    assert dataclasses.astuple(signer.verifier().open(second.note)) == (ORIGIN, 5, rfc.mth(hashes))
