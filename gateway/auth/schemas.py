"""Token endpoint request and response models (RFC 6749 §4.4, §5.1, §5.2)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenRead(BaseModel):
    """A successful token response."""

    access_token: str = Field(description="Bearer token (JWT, ES384) for the gateway's APIs.")
    token_type: str = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(description="Seconds until the token expires (at most 300).")
    scope: str = Field(description="What the token allows.")


class TokenError(BaseModel):
    """An OAuth 2.0 error response (RFC 6749 §5.2), the format token clients expect."""

    error: str = Field(description="OAuth error code, e.g. `invalid_client`.")
    error_description: str = Field(description="What was wrong and what was expected.")
