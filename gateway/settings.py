"""Configuration read from the environment (prefix ``GATEWAY_``), never at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the gateway needs to start; built in the app factory or the CLI."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/gateway.sqlite3",
        description="SQLAlchemy URL: SQLite file (default) or postgresql+psycopg://…",
    )
    keys_dir: Path = Field(
        default=Path("var/keys"),
        description="Folder holding the token-signing key, the data key-encryption key and the blind-index key.",
    )
    policy_path: Path | None = Field(
        default=None, description="The partnership's ISA YAML file; the shipped default when unset."
    )
    issuer: str = Field(
        default="http://127.0.0.1:8000",
        description="The `iss` of the access tokens this gateway mints and accepts.",
    )
    audience: str = Field(default="macpt-gateway", description="The `aud` every access token must carry.")
    token_endpoint: str = Field(
        default="http://127.0.0.1:8000/oauth/token",
        description="The `aud` a client assertion must carry (the token endpoint's public URL).",
    )
    access_token_ttl_seconds: int = Field(default=300, ge=30, le=300)
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint for traces; nothing is exported when unset."
    )
    service_name: str = "macpt-gateway"
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_uses_psycopg3(cls, value: str) -> str:
        # A bare postgresql:// URL would make SQLAlchemy look for psycopg2, which we do not ship.
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value
