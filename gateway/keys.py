"""The keys folder: the gateway's four key files, read once at start-up, made when missing.

One place knows the folder's files: the token-signing key (an EC P-384 JWK), the data
key-encryption key and the blind-index key (256 bits each, base64), and the audit log's
checkpoint-signing key (Ed25519, as a C2SP signer key string naming the log).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audit import NoteSigner
from gateway.auth.keys import SigningKeys, generate_private_jwk
from gateway.kit.crypto import DataKeyring, key_from_file, new_key_file
from gateway.kit.secrets import read_secret_file, write_secret_file

SIGNING_KEY_FILE = "token-signing.jwk"
KEK_FILE = "data-kek.key"
INDEX_KEY_FILE = "blind-index.key"
AUDIT_KEY_FILE = "audit-checkpoint.key"


@dataclass(frozen=True)
class KeyFolder:
    """The folder holding the gateway's keys (GATEWAY_KEYS_DIR)."""

    path: Path

    def signing_keys(self) -> SigningKeys:
        """Read the token-signing key; fail naming the file when it is missing."""
        return SigningKeys.from_private_jwk(json.loads(read_secret_file(self.path / SIGNING_KEY_FILE)))

    def data_keyring(self) -> DataKeyring:
        """Read the key-encryption and blind-index keys; fail naming a file that is missing."""
        return DataKeyring(kek=self._key(KEK_FILE), index_key=self._key(INDEX_KEY_FILE))

    def audit_signer(self) -> NoteSigner:
        """Read the audit log's checkpoint-signing key; fail naming the file when it is missing."""
        return NoteSigner.parse(read_secret_file(self.path / AUDIT_KEY_FILE).decode("ascii"))

    def create_missing(self, *, audit_origin: str) -> list[Path]:
        """Create whichever key files are missing (mode 0600); return those created.

        `audit_origin` names the audit log in the checkpoint key made here; an existing key keeps
        its name (changing it would break every verifier holding the public key).
        """
        makers: dict[str, Callable[[], bytes]] = {
            SIGNING_KEY_FILE: lambda: json.dumps(generate_private_jwk()).encode(),
            KEK_FILE: new_key_file,
            INDEX_KEY_FILE: new_key_file,
            AUDIT_KEY_FILE: lambda: (NoteSigner.generate(audit_origin).skey() + "\n").encode("ascii"),
        }
        created = []
        for name, make in makers.items():
            path = self.path / name
            if not path.exists():
                write_secret_file(path, make())
                created.append(path)
        return created

    def _key(self, name: str) -> bytes:
        return key_from_file(read_secret_file(self.path / name), name=str(self.path / name))
