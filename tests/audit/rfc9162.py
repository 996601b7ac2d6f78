"""Reference RFC 9162 §2.1 Merkle tree and C2SP signed-note checks, written from the specs' text alone."""

# The tests hold the project's audit/tree.py and audit/checkpoint.py against this module, so it
# imports nothing from the project: RFC 9162 needs only SHA-256, and a signed note only base64 and
# Ed25519. Each function follows its section's definition or numbered steps, recursion and all,
# choosing plainness over speed.

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# --- RFC 9162 §2.1.1: Merkle Tree Hash ---------------------------------------------------------


def _hash(data: bytes) -> bytes:
    # §2.1: "this document uses SHA-256 as the hashing algorithm".
    return hashlib.sha256(data).digest()


def leaf_hash(data: bytes) -> bytes:
    """Return MTH({d(0)}) = HASH(0x00 || d(0)), the hash of a one-leaf tree (§2.1.1)."""
    return _hash(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return HASH(0x01 || left || right), an interior node (§2.1.1)."""
    return _hash(b"\x01" + left + right)


def split(n: int) -> int:
    """Return k, "the largest power of two smaller than n (i.e., k < n <= 2k)", for n > 1 (§2.1.1)."""
    assert n > 1
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]) for a list given by its leaves' hashes MTH({d(i)}) (§2.1.1)."""
    n = len(leaf_hashes)
    if n == 0:
        # "The hash of an empty list is the hash of an empty string: MTH({}) = HASH()."
        return _hash(b"")
    if n == 1:
        return leaf_hashes[0]
    k = split(n)
    # "MTH(D_n) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))"
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def mth_of_data(leaves: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]) for a list given by its leaves' data (§2.1.1)."""
    return mth([leaf_hash(d) for d in leaves])


def perfect_subtrees(n: int) -> set[tuple[int, int]]:
    """Return every (level, position) of the perfect subtrees in the tree MTH(D[n]) builds.

    These are the MTH(D[a:b]) the §2.1.1 recursion evaluates with b - a a power of two, 2^level,
    so a = position · 2^level; level 0 are the leaves.
    """
    found: set[tuple[int, int]] = set()

    def visit(start: int, size: int) -> None:
        if size & (size - 1) == 0:
            found.add((size.bit_length() - 1, start // size))
        if size > 1:
            k = split(size)
            visit(start, k)
            visit(start + k, size - k)

    if n:
        visit(0, n)
    return found


# --- RFC 9162 §2.1.3: Merkle inclusion proofs ----------------------------------------------------


def path(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return PATH(m, D[n]), the inclusion proof of leaf m, for 0 <= m < n (§2.1.3.1)."""
    n = len(leaf_hashes)
    assert 0 <= m < n
    if n == 1:
        # "The path for the single leaf in a tree with a one-element input list D[1] = {d(0)} is empty"
        return []
    k = split(n)
    if m < k:
        # "PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k"
        return path(m, leaf_hashes[:k]) + [mth(leaf_hashes[k:])]
    # "PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k"
    return path(m - k, leaf_hashes[k:]) + [mth(leaf_hashes[:k])]


# Checks of §2.1.3.2 a proof can fail, named by their step.
INCLUSION_INDEX = "step 1: leaf_index >= tree_size"
INCLUSION_TOO_LONG = "step 4a: sn is 0 with path left"
INCLUSION_SN = "step 5: sn is not 0"
INCLUSION_ROOT = "step 5: r is not root_hash"


def verify_inclusion(
    leaf_index: int, tree_size: int, hash_: bytes, inclusion_path: Sequence[bytes], root_hash: bytes
) -> list[str]:
    """Run §2.1.3.2's steps; return the checks that fail (empty: the log has proven the inclusion)."""
    # 1. "Compare leaf_index against tree_size. If leaf_index is greater than or equal to
    #    tree_size, then fail the proof verification."
    if leaf_index >= tree_size:
        return [INCLUSION_INDEX]
    # 2. "Set fn to leaf_index and sn to tree_size - 1."
    fn, sn = leaf_index, tree_size - 1
    # 3. "Set r to hash."
    r = hash_
    # 4. "For each value p in the inclusion_path array:"
    for p in inclusion_path:
        # a. "If sn is 0, then stop the iteration and fail the proof verification."
        if sn == 0:
            return [INCLUSION_TOO_LONG]
        # b. "If LSB(fn) is set, or if fn is equal to sn, then:"
        if fn % 2 == 1 or fn == sn:
            # i. "Set r to HASH(0x01 || p || r)."
            r = node_hash(p, r)
            # ii. "If LSB(fn) is not set, then right-shift both fn and sn equally until either
            #     LSB(fn) is set or fn is 0."
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            # "Otherwise: Set r to HASH(0x01 || r || p)."
            r = node_hash(r, p)
        # c. "Finally, right-shift both fn and sn one time."
        fn //= 2
        sn //= 2
    # 5. "Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r and the
    #    root_hash are equal, then the log has proven the inclusion of hash."
    failures = []
    if sn != 0:
        failures.append(INCLUSION_SN)
    if r != root_hash:
        failures.append(INCLUSION_ROOT)
    return failures


# --- RFC 9162 §2.1.4: Merkle consistency proofs --------------------------------------------------


def proof(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return PROOF(m, D[n]) = SUBPROOF(m, D[n], true), for 0 < m <= n (§2.1.4.1)."""
    assert 0 < m <= len(leaf_hashes)
    return subproof(m, leaf_hashes, True)


def subproof(m: int, leaf_hashes: Sequence[bytes], b: bool) -> list[bytes]:
    """Return SUBPROOF(m, D[n], b) (§2.1.4.1)."""
    n = len(leaf_hashes)
    if m == n:
        # "SUBPROOF(m, D[m], true) = {}" and "SUBPROOF(m, D[m], false) = {MTH(D[m])}"
        return [] if b else [mth(leaf_hashes)]
    k = split(n)
    if m <= k:
        # "SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])" if m <= k
        return subproof(m, leaf_hashes[:k], b) + [mth(leaf_hashes[k:])]
    # "SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])" if m > k
    return subproof(m - k, leaf_hashes[k:], False) + [mth(leaf_hashes[:k])]


# Checks of §2.1.4.2 a proof can fail, named by their step.
CONSISTENCY_SIZES = "preamble: not 0 < first < second"
CONSISTENCY_EMPTY = "step 1: consistency_path is empty"
CONSISTENCY_TOO_LONG = "step 6a: sn is 0 with path left"
CONSISTENCY_FIRST = "step 7: fr is not first_hash"
CONSISTENCY_SECOND = "step 7: sr is not second_hash"
CONSISTENCY_SN = "step 7: sn is not 0"


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: Sequence[bytes]
) -> list[str]:
    """Run §2.1.4.2's steps; return the checks that fail (empty: the trees are consistent)."""
    # The section's premise: "a tree head first_hash for tree size first, a tree head second_hash
    # for tree size second where 0 < first < second".
    if not 0 < first < second:
        return [CONSISTENCY_SIZES]
    # 1. "If consistency_path is an empty array, stop and fail the proof verification."
    if not consistency_path:
        return [CONSISTENCY_EMPTY]
    path_ = list(consistency_path)
    # 2. "If first is an exact power of 2, then prepend first_hash to the consistency_path array."
    if first & (first - 1) == 0:
        path_.insert(0, first_hash)
    # 3. "Set fn to first - 1 and sn to second - 1."
    fn, sn = first - 1, second - 1
    # 4. "If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set."
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    # 5. "Set both fr and sr to the first value in the consistency_path array."
    fr = sr = path_[0]
    # 6. "For each subsequent value c in the consistency_path array:"
    for c in path_[1:]:
        # a. "If sn is 0, then stop the iteration and fail the proof verification."
        if sn == 0:
            return [CONSISTENCY_TOO_LONG]
        # b. "If LSB(fn) is set, or if fn is equal to sn, then:"
        if fn % 2 == 1 or fn == sn:
            # i. "Set fr to HASH(0x01 || c || fr)."  ii. "Set sr to HASH(0x01 || c || sr)."
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # iii. "If LSB(fn) is not set, then right-shift both fn and sn equally until either
            #      LSB(fn) is set or fn is 0."
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            # "Otherwise: Set sr to HASH(0x01 || sr || c)."
            sr = node_hash(sr, c)
        # c. "Finally, right-shift both fn and sn one time."
        fn //= 2
        sn //= 2
    # 7. "After completing iterating through the consistency_path array as described above, verify
    #    that the fr calculated is equal to the first_hash supplied, that the sr calculated is equal
    #    to the second_hash value supplied, and that sn is 0."
    failures = []
    if fr != first_hash:
        failures.append(CONSISTENCY_FIRST)
    if sr != second_hash:
        failures.append(CONSISTENCY_SECOND)
    if sn != 0:
        failures.append(CONSISTENCY_SN)
    return failures


# --- C2SP signed-note (https://c2sp.org/signed-note) ---------------------------------------------

EM_DASH = "\u2014"
ED25519_TYPE = b"\x01"


class NoteRejected(ValueError):
    """The reference refuses a note; the message says which rule of the spec it breaks."""


def key_id(name: str, public_key: bytes) -> bytes:
    """Return "SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]"."""
    return hashlib.sha256(name.encode("utf-8") + b"\x0a" + ED25519_TYPE + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """Return the verifier key `<name>+<8 hex digits of key id>+<base64(0x01 || public key)>`."""
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(ED25519_TYPE + public_key).decode('ascii')}"


def signature_line(name: str, public_key: bytes, signature: bytes) -> str:
    """Return the line "— <key name> base64(32-bit key ID || signature)", newline included."""
    return f"{EM_DASH} {name} {base64.b64encode(key_id(name, public_key) + signature).decode('ascii')}\n"


def open_note(note: str, name: str, public_key: bytes) -> str:
    """Return the note's text once an Ed25519 signature of the key (name, public_key) verifies.

    "A signed note consists of a text ending in newline (U+000A), followed by a blank line (only a
    newline), followed by one or more signature lines"; "the text is separated from the signatures
    by the last empty line in the note"; verifiers "MUST ignore signatures from unknown keys".
    """
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise NoteRejected("signed notes MUST NOT contain any ASCII control characters other than newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteRejected("no blank line before the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block.endswith("\n"):
        raise NoteRejected("a signature line ends in a newline")
    wanted = key_id(name, public_key)
    verified = False
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise NoteRejected("a signature line starts with an em dash and a space")
        signer, _, encoded = line[2:].partition(" ")
        signature = base64.b64decode(encoded, validate=True)
        if signer != name or signature[:4] != wanted:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise NoteRejected("a signature of the known key fails to verify") from None
        verified = True
    if not verified:
        raise NoteRejected("no signature from the known key")
    return text


# --- C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) ------------------------------------


def checkpoint_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    """Return the note text of a checkpoint: the origin, "the ASCII decimal representation of the
    number of leaves in the tree, with no leading zeroes", and "the base64 encoding of the root",
    each line ending in a newline."""
    return f"{origin}\n{tree_size:d}\n{base64.b64encode(root_hash).decode('ascii')}\n"
