"""The gateway's token-signing key (ES384); gateway/keys.py reads and makes its file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, KeySet

TOKEN_ALGORITHM = "ES384"


@dataclass(frozen=True)
class SigningKeys:
    """The private key that signs access tokens and the key set that verifies them."""

    private: ECKey
    verification: KeySet

    @classmethod
    def from_private_jwk(cls, jwk: dict[str, Any]) -> SigningKeys:
        """Build the signing key and its public verification set from a private JWK."""
        private = ECKey.import_key(jwk)
        public = ECKey.import_key(private.as_dict(private=False))
        return cls(private=private, verification=KeySet([public]))


def generate_private_jwk() -> dict[str, Any]:
    """Return a new EC P-384 private key as a JWK, with a key id."""
    return dict(ECKey.generate_key("P-384", private=True, auto_kid=True).as_dict(private=True))
