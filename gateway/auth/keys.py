"""The gateway's token-signing key (ES384), loaded once at start-up."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

from gateway.kit.secrets import read_secret_file, write_secret_file

SIGNING_KEY_FILE = "token-signing.jwk"
TOKEN_ALGORITHM = "ES384"


@dataclass(frozen=True)
class SigningKeys:
    """The private key that signs access tokens and the key set that verifies them."""

    private: ECKey
    verification: KeySet

    @classmethod
    def load(cls, keys_dir: Path) -> SigningKeys:
        """Load the signing key from the keys folder, with a clear error when it is missing."""
        private = ECKey.import_key(json.loads(read_secret_file(keys_dir / SIGNING_KEY_FILE)))
        public = ECKey.import_key(private.as_dict(private=False))
        return cls(private=private, verification=KeySet([public]))

    def public_jwks(self) -> dict[str, Any]:
        """Return the public JWKS, for anyone who must verify our tokens."""
        return dict(self.verification.as_dict(private=False))


def create_signing_key(keys_dir: Path) -> Path | None:
    """Create the token-signing key if missing; return its path when created."""
    path = keys_dir / SIGNING_KEY_FILE
    if path.exists():
        return None
    key = ECKey.generate_key("P-384", private=True, auto_kid=True)
    write_secret_file(path, json.dumps(key.as_dict(private=True)).encode())
    return path
