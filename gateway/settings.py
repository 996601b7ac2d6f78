"""Configuration read from the environment (prefix ``GATEWAY_``), never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.sensitivity import Classifier, load_classifier
from gateway.kit.db import DatabaseLimits
from policies import Policy, default_policy, load_policy
from policies.model import GENDER_IDENTITY_LABELS, SPECIAL_CATEGORY_LABELS


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
    sensitivity_codes_path: Path | None = Field(
        default=None,
        description="The partnership's own sensitivity code list (JSON, the shape of adapters/sensitivity_codes.json), "
        "added to the shipped list; the shipped list alone when unset.",
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
    audit_origin: str = Field(
        # A schema-less URL, as C2SP recommends for key names; it need not resolve.
        default="macpt-gateway.invalid/audit",
        pattern=r"^[^\s+]+$",
        description="The audit log's name in its signed checkpoints (used when `gateway keys create` makes the key).",
    )
    audit_checkpoint_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="How often each process signs a checkpoint while events arrive; 0 turns its signer off.",
    )
    audit_append: Literal["auto", "inline", "deferred"] = Field(
        default="auto",
        description=(
            "inline: each commit appends its audit events under the trail's lock; deferred: each commit "
            "stages them and an integrator appends them in batches (for many concurrent writers); "
            "auto: deferred on PostgreSQL, inline on SQLite (one writer at a time anyway)."
        ),
    )
    audit_integration_interval_s: float = Field(
        default=0.1, gt=0, le=5, description="How often the integrator appends staged audit events (deferred)."
    )
    review_timezone: str = Field(default="Europe/London", description="Time zone of the working day, for review flags.")
    review_working_hours: str = Field(
        default="08:00-18:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Working hours (HH:MM-HH:MM; equal times: all day) on working days; a view outside them is flagged for review.",
    )
    review_working_days: str = Field(
        default="1-5",
        pattern=r"^[1-7]-[1-7]$",
        description="Working days as ISO weekday numbers (1 = Monday): first-last.",
    )
    school_day_start: str = Field(
        default="08:30",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description=(
            "When a school day starts (HH:MM, in review_timezone, Monday to Friday): an Operation "
            "Encompass notice is due by the start of the next school day."
        ),
    )
    encompass_sweep_interval_s: float = Field(
        default=30.0,
        ge=0,
        description="How often each worker escalates Operation Encompass notices past their deadline (0: never).",
    )
    webhook_interval_s: float = Field(
        default=5.0, ge=0, description="How often each worker sends due team webhook deliveries (0: never)."
    )
    webhook_allow_http: bool = Field(
        default=False, description="Allow a team webhook on plain http to another host (never in production)."
    )
    review_daily_children: int = Field(
        default=25, ge=1, description="Children one person may open in a day before their views are flagged."
    )
    access_token_ttl_seconds: int = Field(default=300, ge=30, le=300)
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint for traces; nothing is exported when unset."
    )
    service_name: str = "macpt-gateway"
    log_level: str = "INFO"
    # 32 MiB: 5,000 entries of the richest UK Core examples (the RichardSmith Patient and the inpatient
    # Encounter, alternating) measure 13.7 MiB as compact JSON and 26.1 MiB indented by two spaces.
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description=(
            "Largest push body accepted, in bytes (413 with an OperationOutcome beyond, before the body is parsed). "
            "The default takes a Bundle of max_bundle_entries realistic UK Core entries, indented."
        ),
    )
    max_bundle_entries: int = Field(
        default=5000,
        ge=1,
        description=(
            "Most entries one FHIR push may carry (413 with an OperationOutcome beyond); split larger loads. A "
            "transaction of this many is stored all or nothing in one database transaction, whose locks are "
            "bounded whatever its size (gateway/kit/db.py, lock striping); while it runs, other pushes of the same "
            "client and pushes whose Patients are scored wait for it."
        ),
    )
    max_atomic_records: int = Field(
        default=250,
        ge=1,
        description=(
            "Most records an all-or-nothing police or education batch may carry (413 beyond): it is one "
            "transaction, which holds other pushes of its client back while it runs. Larger batches are stored "
            "in chunks."
        ),
    )
    max_csv_rows: int = Field(
        default=50_000, ge=1, description="Most rows one CSV extract may carry (413 beyond); split larger extracts."
    )
    max_override_days: int = Field(
        default=90, ge=1, le=366, description="Longest an override (sharing without or against consent) may run, in days."
    )
    break_glass_minutes: int = Field(
        default=60, ge=1, le=24 * 60, description="How long break-glass access to a child lasts, in minutes."
    )
    db_lock_timeout_ms: int = Field(default=5_000, ge=100, description="PostgreSQL lock_timeout.")
    db_statement_timeout_ms: int = Field(default=30_000, ge=1000, description="PostgreSQL statement_timeout.")
    db_idle_in_transaction_timeout_ms: int = Field(
        default=60_000, ge=1000, description="PostgreSQL idle_in_transaction_session_timeout."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=100, description="How long a SQLite writer waits for the one write lock."
    )
    db_pool_size: int = Field(default=10, ge=1, description="Connections per worker process (as many again on overflow).")
    db_pool_timeout_s: int = Field(default=10, ge=1, description="Longest wait for a pooled connection.")

    def load_policy(self) -> Policy:
        """Return the ISA these settings name (GATEWAY_POLICY_PATH), or the one shipped."""
        return load_policy(self.policy_path) if self.policy_path else default_policy()

    def load_classifier(self) -> Classifier:
        """Return the sensitivity classifier: the shipped code list, extended by the partnership's.

        Raises ValueError when the file is not a code list or names a label the policy does not know
        (a label the engine does not act on would leave the record it was meant to protect open).
        """
        classifier = load_classifier(self.sensitivity_codes_path)
        unknown = classifier.labels - set(SPECIAL_CATEGORY_LABELS) - GENDER_IDENTITY_LABELS
        if unknown:
            raise ValueError(
                f"{self.sensitivity_codes_path}: labels {', '.join(sorted(unknown))} are not special categories the "
                f"policy knows ({', '.join(sorted([*SPECIAL_CATEGORY_LABELS, *GENDER_IDENTITY_LABELS]))})"
            )
        return classifier

    def audit_deferred(self) -> bool:
        """Say whether commits stage their audit events for the integrator (see audit_append)."""
        if self.audit_append == "auto":
            return self.database_url.startswith("postgresql")
        return self.audit_append == "deferred"

    def database_limits(self) -> DatabaseLimits:
        """Return how long the gateway waits on its database."""
        return DatabaseLimits(
            lock_timeout_ms=self.db_lock_timeout_ms,
            statement_timeout_ms=self.db_statement_timeout_ms,
            idle_in_transaction_timeout_ms=self.db_idle_in_transaction_timeout_ms,
            sqlite_busy_timeout_ms=self.sqlite_busy_timeout_ms,
            pool_size=self.db_pool_size,
            pool_timeout_s=self.db_pool_timeout_s,
        )

    @field_validator("database_url")
    @classmethod
    def _postgres_uses_psycopg3(cls, value: str) -> str:
        # A bare postgresql:// URL would make SQLAlchemy look for psycopg2, which we do not ship.
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value
