"""Instance settings: one pydantic-settings class, read once and passed down.

Variable names follow the product brief (``PORT``, ``DATABASE_URL``, ``REDIS_URL``,
``ENCRYPTION_KEY``, ``STORAGE_PROVIDERS``...); every name the brief does not give starts
with ``PAULYOPS_``. Values come from the process environment first, then from
``<instance root>/.env.local``. Tests never read a developer's ``.env.local`` because they
always point ``PAULYOPS_HOME`` at a temporary directory.

Organization-level values here (``COMPLIANCE_LEVEL``, ``DEFAULT_AGENTS``...) are only
*defaults for new organizations*; an organization's own rows always win.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from paulyops.core import vocabulary
from paulyops.core.envfile import read_env_file, update_env_file
from paulyops.core.errors import ConfigError
from paulyops.core.logging import parse_debug
from paulyops.core.vocabulary import (
    BackupStrategy,
    ComplianceLevel,
    EncryptionLevel,
    ProviderType,
)

ENV_FILE_NAME = ".env.local"

# Values that people paste from examples; a production instance must not run on them.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "your-jwt-secret",
        "your-encryption-key",
        "your-session-secret",
        "password",
        "test",
        "dev",
    }
)
# 32 characters of base64url carry 192 bits: enough for an HMAC key, short enough to paste.
MIN_SECRET_LENGTH = 32

# Key-rotation variables the key ring reads itself (core/security/keyfile.py).
ROTATION_VARS = frozenset({"PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT", "PAULYOPS_ENCRYPTION_GRACE_DAYS"})

SECRET_FIELDS = ("jwt_secret", "session_secret", "encryption_key", "instance_key")


class Environment(StrEnum):
    """Where the instance runs; production refuses weak or missing secrets."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class LogFormat(StrEnum):
    """How log lines are written."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every instance setting, with the environment variable that sets it.

    Construct it through :func:`load_settings`, which turns validation errors into a
    :class:`ConfigError` that names the variable and never echoes a secret.
    """

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # --- instance -------------------------------------------------------------------
    env: Environment = Field(
        Environment.DEVELOPMENT,
        validation_alias=AliasChoices("PAULYOPS_ENV", "env"),
        description="development, production or test",
    )
    home: Path = Field(
        Path("."),
        validation_alias=AliasChoices("PAULYOPS_HOME", "home"),
        description="instance root holding .env.local, configs/ and data/",
    )
    data_dir_override: Path | None = Field(
        None,
        validation_alias=AliasChoices("PAULYOPS_DATA_DIR", "data_dir"),
        description="data directory (default <root>/data)",
    )
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("PAULYOPS_HOST", "host"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "port"))
    hostname: str | None = Field(None, validation_alias=AliasChoices("HOSTNAME", "hostname"))
    public_url: str | None = Field(
        None, validation_alias=AliasChoices("PAULYOPS_PUBLIC_URL", "public_url")
    )
    trusted_proxies: CsvList = Field(
        default_factory=list,
        validation_alias=AliasChoices("PAULYOPS_TRUSTED_PROXIES", "trusted_proxies"),
    )

    # --- services ---------------------------------------------------------------------
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    db_pool_min: int = Field(
        2, ge=1, le=200, validation_alias=AliasChoices("PAULYOPS_DB_POOL_MIN", "db_pool_min")
    )
    db_pool_max: int = Field(
        10, ge=1, le=500, validation_alias=AliasChoices("PAULYOPS_DB_POOL_MAX", "db_pool_max")
    )
    db_pool_timeout: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("PAULYOPS_DB_POOL_TIMEOUT", "db_pool_timeout")
    )
    db_connect_attempts: int = Field(
        0,
        ge=0,
        validation_alias=AliasChoices("PAULYOPS_DB_CONNECT_ATTEMPTS", "db_connect_attempts"),
        description="0 = keep retrying for ever (the server stays up and answers /api/livez)",
    )
    health_interval: float = Field(
        10.0,
        gt=0,
        validation_alias=AliasChoices("PAULYOPS_HEALTH_INTERVAL", "health_interval"),
        description="seconds between health monitor runs and database and Redis probes",
    )
    # --- bounded waits on dependencies (issue 10: a stalled service must never hang us)
    health_check_timeout: float = Field(
        5.0,
        gt=0,
        le=60,
        validation_alias=AliasChoices("PAULYOPS_HEALTH_CHECK_TIMEOUT", "health_check_timeout"),
        description="seconds a health check may take before it counts as unhealthy",
    )
    db_statement_timeout: float = Field(
        30.0,
        ge=0,
        validation_alias=AliasChoices("PAULYOPS_DB_STATEMENT_TIMEOUT", "db_statement_timeout"),
        description="PostgreSQL statement_timeout in seconds (0 = none)",
    )
    db_socket_timeout: float = Field(
        35.0,
        ge=0,
        validation_alias=AliasChoices("PAULYOPS_DB_SOCKET_TIMEOUT", "db_socket_timeout"),
        description="seconds to wait for any PostgreSQL reply before dropping the connection",
    )
    redis_socket_timeout: float = Field(
        0.5,
        gt=0,
        le=30,
        validation_alias=AliasChoices("PAULYOPS_REDIS_SOCKET_TIMEOUT", "redis_socket_timeout"),
        description="seconds to wait for Redis to connect or answer a command",
    )
    audit_checkpoint_interval_s: float = Field(
        300.0,
        ge=0,
        validation_alias=AliasChoices(
            "PAULYOPS_AUDIT_CHECKPOINT_INTERVAL_S", "audit_checkpoint_interval_s"
        ),
        description="seconds between the server's signed checkpoints of new audit rows "
        "(0 = only at shutdown and after each setup)",
    )
    stripe_secret_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("STRIPE_SECRET_KEY", "stripe_secret_key")
    )
    stripe_api_base: str | None = Field(
        None,
        validation_alias=AliasChoices("PAULYOPS_STRIPE_API_BASE", "stripe_api_base"),
        description="override Stripe's API address (a test double or a proxy)",
    )
    smtp_url: SecretStr | None = Field(None, validation_alias=AliasChoices("SMTP_URL", "smtp_url"))

    # --- secrets ----------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("JWT_SECRET", "jwt_secret")
    )
    session_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SESSION_SECRET", "session_secret")
    )
    encryption_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ENCRYPTION_KEY", "encryption_key")
    )
    encryption_keys_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("ENCRYPTION_KEYS_PREVIOUS", "encryption_keys_previous"),
    )
    session_secrets_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "PAULYOPS_SESSION_SECRETS_PREVIOUS", "session_secrets_previous"
        ),
        description="older SESSION_SECRET values still accepted (grace after rotation)",
    )
    jwt_secrets_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("PAULYOPS_JWT_SECRETS_PREVIOUS", "jwt_secrets_previous"),
        description="older JWT_SECRET values still accepted (grace after rotation)",
    )
    encryption_key_created_at: datetime | None = Field(
        None,
        validation_alias=AliasChoices(
            "PAULYOPS_ENCRYPTION_KEY_CREATED_AT", "encryption_key_created_at"
        ),
        description="when ENCRYPTION_KEY was generated (for the 90-day rotation reminder)",
    )
    instance_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("PAULYOPS_INSTANCE_KEY", "instance_key")
    )

    # --- logging and alerts -------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias=AliasChoices("PAULYOPS_LOG_LEVEL", "log_level"))
    log_format: LogFormat = Field(
        LogFormat.AUTO, validation_alias=AliasChoices("PAULYOPS_LOG_FORMAT", "log_format")
    )
    alert_webhook_url: str | None = Field(
        None, validation_alias=AliasChoices("PAULYOPS_ALERT_WEBHOOK_URL", "alert_webhook_url")
    )
    debug: str | None = Field(
        None,
        validation_alias=AliasChoices("PAULYOPS_DEBUG", "DEBUG", "debug"),
        description="1 or * for everything at DEBUG, or logger names like paulyops.web",
    )
    log_file_enabled: bool = Field(
        True,
        validation_alias=AliasChoices("PAULYOPS_LOG_FILE", "log_file_enabled"),
        description="servers also write JSON lines to <data dir>/logs (read by paulyops logs)",
    )
    log_file_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        validation_alias=AliasChoices("PAULYOPS_LOG_FILE_MAX_BYTES", "log_file_max_bytes"),
        description="size at which a log file rotates",
    )
    log_file_backups: int = Field(
        5,
        ge=1,
        le=100,
        validation_alias=AliasChoices("PAULYOPS_LOG_FILE_BACKUPS", "log_file_backups"),
        description="rotated files kept per process",
    )
    log_retention_days: int = Field(
        14,
        ge=1,
        le=3650,
        validation_alias=AliasChoices("PAULYOPS_LOG_RETENTION_DAYS", "log_retention_days"),
        description="log files of stopped processes are removed after this many days",
    )

    # --- request protection ----------------------------------------------------------------
    rate_limits: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("PAULYOPS_RATE_LIMITS", "rate_limits"),
        description="overrides like 'signin=10/minute,onboarding_setup=5/hour'",
    )
    ratelimit_allowlist: CsvList = Field(
        default_factory=list,
        validation_alias=AliasChoices("PAULYOPS_RATELIMIT_ALLOWLIST", "ratelimit_allowlist"),
        description="addresses or networks (CIDR) that bypass rate limits, e.g. a monitor",
    )
    storage_private_endpoints: bool = Field(
        False,
        validation_alias=AliasChoices(
            "PAULYOPS_STORAGE_PRIVATE_ENDPOINTS", "storage_private_endpoints"
        ),
        description="let S3 endpoints point at private or loopback addresses (e.g. MinIO)",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        validation_alias=AliasChoices("PAULYOPS_MAX_BODY_BYTES", "max_body_bytes"),
    )

    # --- agent jobs (services/agents/jobs.py, workers/; docs/agents/jobs.md) ---------------
    celery_broker_url: str | None = Field(
        None,
        validation_alias=AliasChoices("CELERY_BROKER_URL", "celery_broker_url"),
        description="redis:// or amqp:// broker: jobs go to `paulyops worker` processes "
        "(unset: worker threads inside the server)",
    )
    job_lease_s: float = Field(
        60.0,
        ge=3,
        le=3600,
        validation_alias=AliasChoices("PAULYOPS_JOB_LEASE_S", "job_lease_s"),
        description="seconds a claimed job stays leased without a heartbeat (heartbeats "
        "come every third of it)",
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        le=50,
        validation_alias=AliasChoices("PAULYOPS_JOB_MAX_ATTEMPTS", "job_max_attempts"),
        description="claims of one job before it is dead",
    )
    job_retry_base_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        validation_alias=AliasChoices("PAULYOPS_JOB_RETRY_BASE_S", "job_retry_base_s"),
        description="first retry delay; doubled at every further attempt",
    )
    job_retry_max_s: float = Field(
        3600.0,
        ge=0,
        validation_alias=AliasChoices("PAULYOPS_JOB_RETRY_MAX_S", "job_retry_max_s"),
        description="longest retry delay",
    )
    agent_quarantine_after: int = Field(
        5,
        ge=1,
        le=1000,
        validation_alias=AliasChoices("PAULYOPS_AGENT_QUARANTINE_AFTER", "agent_quarantine_after"),
        description="consecutive failed runs that quarantine an installation",
    )
    worker_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        validation_alias=AliasChoices("PAULYOPS_WORKER_CONCURRENCY", "worker_concurrency"),
        description="batches one process runs at once (embedded threads or a Celery worker)",
    )
    worker_grace_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        validation_alias=AliasChoices("PAULYOPS_WORKER_GRACE_S", "worker_grace_s"),
        description="seconds running batches get to finish at shutdown before their jobs "
        "are handed back",
    )
    celery_task_time_limit_s: float = Field(
        900.0,
        ge=5,
        validation_alias=AliasChoices(
            "PAULYOPS_CELERY_TASK_TIME_LIMIT_S", "celery_task_time_limit_s"
        ),
        description="hard time limit of one Celery task (one batch)",
    )
    redis_visibility_timeout_s: float = Field(
        3600.0,
        ge=1,
        validation_alias=AliasChoices(
            "PAULYOPS_REDIS_VISIBILITY_TIMEOUT_S", "redis_visibility_timeout_s"
        ),
        description="Redis broker: seconds before an unacknowledged task is delivered "
        "again; must exceed the task time limit",
    )
    amqp_consumer_timeout_s: float = Field(
        1800.0,
        ge=1,
        validation_alias=AliasChoices(
            "PAULYOPS_AMQP_CONSUMER_TIMEOUT_S", "amqp_consumer_timeout_s"
        ),
        description="RabbitMQ: the broker's consumer_timeout (it cannot be read from the "
        "broker); must exceed the task time limit",
    )
    celery_queue: str = Field(
        "paulyops.jobs",
        pattern=r"^[A-Za-z0-9_.:-]{1,100}$",
        validation_alias=AliasChoices("PAULYOPS_CELERY_QUEUE", "celery_queue"),
        description="the broker queue agent jobs travel on",
    )
    job_queue_degraded_depth: int = Field(
        1000,
        ge=1,
        validation_alias=AliasChoices(
            "PAULYOPS_JOB_QUEUE_DEGRADED_DEPTH", "job_queue_degraded_depth"
        ),
        description="healthz reports the queue degraded past this many waiting jobs",
    )
    job_queue_degraded_age_s: float = Field(
        900.0,
        gt=0,
        validation_alias=AliasChoices(
            "PAULYOPS_JOB_QUEUE_DEGRADED_AGE_S", "job_queue_degraded_age_s"
        ),
        description="... or when the oldest due job has waited longer than this",
    )

    # --- defaults for new organizations (the brief's names) ------------------------------
    # Typed with the SetupSpec's own vocabularies and bounds (core/vocabulary.py), so a
    # typo like COMPLIANCE_LEVEL=bogus stops `validate env` and `serve` with the
    # variable's name. The defaults are the spec's: a variable left unset adds nothing
    # (templates and presets decide, see settings_defaults in services/onboarding).
    storage_providers: Annotated[list[ProviderType], NoDecode] = Field(
        default_factory=lambda: list(vocabulary.DEFAULT_PROVIDERS),
        validation_alias=AliasChoices("STORAGE_PROVIDERS", "storage_providers"),
    )
    backup_strategy: BackupStrategy = Field(
        vocabulary.DEFAULT_BACKUP_STRATEGY,
        validation_alias=AliasChoices("BACKUP_STRATEGY", "backup_strategy"),
    )
    retention_days: int = Field(
        vocabulary.DEFAULT_RETENTION_DAYS,
        ge=vocabulary.RETENTION_MIN_DAYS,
        le=vocabulary.RETENTION_MAX_DAYS,
        validation_alias=AliasChoices("RETENTION_DAYS", "retention_days"),
    )
    compliance_level: ComplianceLevel = Field(
        vocabulary.DEFAULT_COMPLIANCE_LEVEL,
        validation_alias=AliasChoices("COMPLIANCE_LEVEL", "compliance_level"),
    )
    audit_logging: bool = Field(
        True, validation_alias=AliasChoices("AUDIT_LOGGING", "audit_logging")
    )
    # Unset, the organization's preset decides: 365 days under basic, 2555 (seven years,
    # the brief's figure) under soc2 and enterprise; set, it fills security.dataRetention.
    audit_retention_days: int = Field(
        vocabulary.DEFAULT_AUDIT_RETENTION_DAYS,
        ge=vocabulary.RETENTION_MIN_DAYS,
        le=vocabulary.RETENTION_MAX_DAYS,
        validation_alias=AliasChoices("AUDIT_RETENTION_DAYS", "audit_retention_days"),
    )
    encryption_level: EncryptionLevel = Field(
        vocabulary.DEFAULT_ENCRYPTION_LEVEL,
        validation_alias=AliasChoices("ENCRYPTION_LEVEL", "encryption_level"),
    )
    default_agents: CsvList = Field(
        default_factory=lambda: list(vocabulary.DEFAULT_AGENTS),
        validation_alias=AliasChoices("DEFAULT_AGENTS", "default_agents"),
    )
    auto_routing: bool = Field(True, validation_alias=AliasChoices("AUTO_ROUTING", "auto_routing"))
    confidence_threshold: float = Field(
        vocabulary.DEFAULT_CONFIDENCE_THRESHOLD,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("CONFIDENCE_THRESHOLD", "confidence_threshold"),
    )
    monitoring_enabled: bool = Field(
        True, validation_alias=AliasChoices("MONITORING_ENABLED", "monitoring_enabled")
    )

    # --- agent sandbox (docs/agents/sandbox.md) -------------------------------------------
    sandbox_root_override: Path | None = Field(
        None,
        validation_alias=AliasChoices("PAULYOPS_SANDBOX_ROOT", "sandbox_root"),
        description="run folders of sandboxed agents (default /var/lib/paulyops-sandbox as "
        "root, else <root>/sandbox); never holds a secret",
    )
    sandbox_insecure: bool = Field(
        False,
        validation_alias=AliasChoices("PAULYOPS_SANDBOX_INSECURE", "sandbox_insecure"),
        description="without root and bubblewrap, run agents with rlimits only (logged)",
    )
    sandbox_uids: str = Field(
        "61000-61063",
        pattern=r"^\d+-\d+$",
        validation_alias=AliasChoices("PAULYOPS_SANDBOX_UIDS", "sandbox_uids"),
        description="slot uids agents run as (one per concurrent run), 'FIRST-LAST'",
    )
    sandbox_max_cpu_seconds: int = Field(
        600,
        ge=1,
        validation_alias=AliasChoices(
            "PAULYOPS_SANDBOX_MAX_CPU_SECONDS", "sandbox_max_cpu_seconds"
        ),
    )
    sandbox_max_memory_mb: int = Field(
        8192,
        ge=64,
        validation_alias=AliasChoices("PAULYOPS_SANDBOX_MAX_MEMORY_MB", "sandbox_max_memory_mb"),
    )
    sandbox_max_wall_seconds: int = Field(
        3600,
        ge=1,
        validation_alias=AliasChoices(
            "PAULYOPS_SANDBOX_MAX_WALL_SECONDS", "sandbox_max_wall_seconds"
        ),
    )
    sandbox_max_processes: int = Field(
        256,
        ge=1,
        validation_alias=AliasChoices("PAULYOPS_SANDBOX_MAX_PROCESSES", "sandbox_max_processes"),
    )
    sandbox_max_file_size_mb: int = Field(
        1024,
        ge=1,
        validation_alias=AliasChoices(
            "PAULYOPS_SANDBOX_MAX_FILE_SIZE_MB", "sandbox_max_file_size_mb"
        ),
    )

    # --- validators ---------------------------------------------------------------------
    @field_validator("storage_providers", "default_agents", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator(
        "storage_providers",
        "backup_strategy",
        "compliance_level",
        "encryption_level",
        "default_agents",
        mode="before",
    )
    @classmethod
    def _fold_choices(cls, value: Any) -> Any:
        # The SetupSpec folds choices the same way (trimmed, lower-case): ``SOC2`` works.
        if isinstance(value, str):
            return value.strip().lower()
        if isinstance(value, list):
            return [item.strip().lower() if isinstance(item, str) else item for item in value]
        return value

    @field_validator("default_agents")
    @classmethod
    def _check_agent_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(vocabulary.AGENT_NAME_PATTERN, name.removeprefix("paulyops.")):
                raise ValueError(f"expected short agent names like 'file-processor', got {name!r}")
        return value

    @field_validator("ratelimit_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _parse_rate_limits(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        out: dict[str, str] = {}
        for part in _csv(value):
            name, sep, rate = part.partition("=")
            if not sep or not name.strip() or not rate.strip():
                raise ValueError("expected name=rate pairs like 'signin=10/minute'")
            out[name.strip()] = rate.strip()
        return out

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: dict[str, str]) -> dict[str, str]:
        # Checked here, with the parser the rate limiter uses, so `validate env` and every
        # start refuse a bad rate before anything (a generated secret) is written.
        if not value:
            return value
        import limits  # only when overrides are set: the CLI starts without it

        for name, rate in value.items():
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"{name!r}: expected a limit name of letters, digits, '_', '-'")
            try:
                parsed = limits.parse_many(rate)
            except ValueError:
                parsed = []
            if len(parsed) != 1:
                raise ValueError(f"{name}: expected one rate like '10/minute'")
        return value

    @field_validator(
        "encryption_keys_previous",
        "session_secrets_previous",
        "jwt_secrets_previous",
        mode="before",
    )
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("expected a sqlite:/// or postgresql:// URL")
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")):
            raise ValueError("expected a redis://, rediss://, amqp:// or amqps:// URL")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        decode_key(value.get_secret_value())
        return value

    @field_validator("encryption_keys_previous")
    @classmethod
    def _check_previous_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            decode_key(key.get_secret_value())
        return value

    @field_validator("debug")
    @classmethod
    def _check_debug(cls, value: str | None) -> str | None:
        parse_debug(value)  # raises ValueError naming what is expected
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @field_validator("sandbox_uids")
    @classmethod
    def _check_sandbox_uids(cls, value: str) -> str:
        first, _, last = value.partition("-")
        if not 1000 <= int(first) <= int(last) < 2**31:
            raise ValueError(f"expected 'FIRST-LAST' with 1000 <= FIRST <= LAST, got {value!r}")
        return value

    # --- derived ------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The instance root (absolute)."""
        return self.home.expanduser().resolve()

    @property
    def log_dir(self) -> Path:
        """Where servers write their rotating JSON-lines log files."""
        return self.data_dir / "logs"

    @property
    def data_dir(self) -> Path:
        """The data directory: ``PAULYOPS_DATA_DIR`` or ``<root>/data`` (absolute)."""
        if self.data_dir_override is not None:
            return self.data_dir_override.expanduser().resolve()
        return self.root / "data"

    @property
    def sandbox_root(self) -> Path:
        """``PAULYOPS_SANDBOX_ROOT``, else ``/var/lib/paulyops-sandbox`` as root, else
        ``<root>/sandbox`` (absolute)."""
        if self.sandbox_root_override is not None:
            return self.sandbox_root_override.expanduser().resolve()
        if os.geteuid() == 0:
            return Path("/var/lib/paulyops-sandbox")
        return self.root / "sandbox"

    @property
    def sandbox_uid_range(self) -> tuple[int, int]:
        """The slot uids as (first, last), inclusive."""
        first, _, last = self.sandbox_uids.partition("-")
        return int(first), int(last)

    @property
    def effective_database_url(self) -> str:
        """``DATABASE_URL``, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'paulyops.db'}"

    @property
    def session_secret_keys(self) -> list[str]:
        """Signing keys for pre-session tokens and flashes: older ones first, newest last."""
        return _keys(self.session_secrets_previous, self.session_secret)

    @property
    def jwt_secret_keys(self) -> list[str]:
        """Signing keys for one-time links: older ones first, the current one last."""
        return _keys(self.jwt_secrets_previous, self.jwt_secret)

    @property
    def effective_public_url(self) -> str:
        """``PAULYOPS_PUBLIC_URL``, or the address the server listens on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host  # noqa: S104  # display only
        return f"http://{host}:{self.port}"

    @property
    def is_production(self) -> bool:
        """Whether the instance runs in production mode."""
        return self.env is Environment.PRODUCTION

    @property
    def json_logs(self) -> bool:
        """Whether log lines are JSON (production default) or console text."""
        if self.log_format is LogFormat.AUTO:
            return self.is_production
        return self.log_format is LogFormat.JSON

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """``repr``/``str`` without secrets: the secret fields are ``SecretStr`` already;
        service URLs lose their password and the alert webhook (a capability URL) is hidden.
        """
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                value = _URL_PASSWORD.sub(r"\1***@", value)
            elif name in _HIDDEN_FIELDS and value is not None:
                value = "**********"
            yield name, value


# Fields whose value is a URL that may carry user:password@ (database, Redis).
_URL_FIELDS = frozenset({"database_url", "redis_url"})
# Fields whose whole value is a secret without being a SecretStr (webhook URLs embed tokens).
_HIDDEN_FIELDS = frozenset({"alert_webhook_url"})
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^/\s@]+@")


def _keys(previous: list[SecretStr], current: SecretStr | None) -> list[str]:
    # itsdangerous signs with the last key and verifies with any of them.
    keys = [old.get_secret_value() for old in reversed(previous)]
    if current is not None:
        keys.append(current.get_secret_value())
    return keys


def decode_key(text: str) -> bytes:
    """Decode an ``ENCRYPTION_KEY``: base64url (padding optional) of exactly 32 bytes.

    Raises:
        ValueError: the text is not base64url or not 32 bytes long.
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise ValueError("expected base64url of 32 random bytes") from err
    if len(raw) != 32:
        raise ValueError(f"expected base64url of 32 random bytes, got {len(raw)} bytes")
    return raw


def key_id(raw: bytes) -> str:
    """Return the key id of a raw key: the first 8 hex characters of its sha256."""
    return hashlib.sha256(raw).hexdigest()[:8]


def new_encryption_key() -> str:
    """Return a new random ``ENCRYPTION_KEY`` value."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def new_instance_key() -> str:
    """Return a new Ed25519 private key (raw 32 bytes, base64url) for audit checkpoints."""
    return new_encryption_key()


def new_secret() -> str:
    """Return a new random secret for signing (sessions, one-time links)."""
    return secrets.token_urlsafe(48)


SECRET_VAR_FIELDS = {
    "JWT_SECRET": "jwt_secret",
    "SESSION_SECRET": "session_secret",
    "ENCRYPTION_KEY": "encryption_key",
    "PAULYOPS_INSTANCE_KEY": "instance_key",
}

SECRET_GENERATORS = {
    "JWT_SECRET": new_secret,
    "SESSION_SECRET": new_secret,
    "ENCRYPTION_KEY": new_encryption_key,
    "PAULYOPS_INSTANCE_KEY": new_instance_key,
}


def _env_var_of(field_name: str) -> str:
    info = Settings.model_fields.get(field_name)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    return field_name.upper()


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        loc = item["loc"][0] if item["loc"] else "?"
        name = str(loc)
        var = _env_var_of(name) if name in Settings.model_fields else name
        message = str(item["msg"]).removeprefix("Value error, ")
        is_secret = name in SECRET_FIELDS or "KEY" in var or "SECRET" in var
        shown = "" if is_secret else f", got {item.get('input')!r}"
        lines.append(f"{var}: {message}{shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def weak_secrets(settings: Settings) -> list[str]:
    """Return the names of secrets that are missing, placeholders or too short."""
    weak = []
    for var, value in (
        ("JWT_SECRET", settings.jwt_secret),
        ("SESSION_SECRET", settings.session_secret),
    ):
        text = value.get_secret_value() if value is not None else ""
        if len(text) < MIN_SECRET_LENGTH or text.lower() in PLACEHOLDER_SECRETS:
            weak.append(var)
    if settings.encryption_key is None:
        weak.append("ENCRYPTION_KEY")
    if settings.instance_key is None:
        weak.append("PAULYOPS_INSTANCE_KEY")
    return weak


def load_settings(
    *, root: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read settings from the environment and ``<root>/.env.local``.

    Args:
        root: the instance root; default ``PAULYOPS_HOME`` or the current directory.
        environ: the environment to read (default ``os.environ``); tests pass their own.
        overrides: field values that win over everything (used by tests and the CLI).

    Raises:
        ConfigError: a value is malformed; the message names the variable.
    """
    env = dict(os.environ if environ is None else environ)
    if root is None:
        root = Path(env.get("PAULYOPS_HOME") or ".")
    env_file = root / ENV_FILE_NAME
    file_values = read_env_file(env_file) if env_file.is_file() else {}
    merged = {**file_values, **env}
    merged["PAULYOPS_HOME"] = str(root)
    lowered = {key.upper(): value for key, value in merged.items()}
    known = _known_env_names()
    source = {key: value for key, value in lowered.items() if key in known}
    try:
        settings = Settings.model_validate({**source, **overrides})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    if ROTATION_VARS & lowered.keys():
        # Read by the key ring, not by this class; checked here so a malformed value stops
        # every command before anything (a generated secret) is written.
        from paulyops.core.security.keyfile import check_rotation_values

        check_rotation_values({k: v for k, v in lowered.items() if k in ROTATION_VARS})
    return settings


def _known_env_names() -> set[str]:
    names: set[str] = set()
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
    return names


def ensure_secrets(settings: Settings) -> tuple[Settings, list[str]]:
    """Make sure every instance secret exists, generating missing ones in development.

    New secrets are appended to ``<root>/.env.local`` (mode 0600); an existing secret is
    never overwritten. In production a missing or weak secret refuses to start.

    Returns:
        The settings re-read with the new secrets, and the names that were generated.

    Raises:
        ConfigError: production mode with missing or weak secrets.
    """
    weak = weak_secrets(settings)
    if not weak:
        return settings, []
    if settings.is_production:
        raise ConfigError(
            "refusing to start in production with missing or weak secrets: "
            + ", ".join(weak)
            + f" (set them in the environment or {settings.root / ENV_FILE_NAME}; "
            "run `paulyops setup` to generate them)"
        )
    env_file = settings.root / ENV_FILE_NAME
    existing = read_env_file(env_file) if env_file.is_file() else {}
    generated = {name: SECRET_GENERATORS[name]() for name in weak if name not in existing}
    if generated:
        extra = {}
        if "ENCRYPTION_KEY" in generated:
            extra["PAULYOPS_ENCRYPTION_KEY_CREATED_AT"] = datetime.now(UTC).isoformat()
        update_env_file(env_file, {**generated, **extra})
    merged = {**existing, **generated}
    update = {SECRET_VAR_FIELDS[var]: SecretStr(merged[var]) for var in weak if merged.get(var)}
    return settings.model_copy(update=update), sorted(generated)


# Kept under its old name for callers that append settings (tests, fixtures): the one
# writer sets a variable where the file already defines it and appends the others.
write_env_values = update_env_file


__all__ = [
    "ENV_FILE_NAME",
    "Environment",
    "LogFormat",
    "Settings",
    "decode_key",
    "ensure_secrets",
    "key_id",
    "load_settings",
    "new_encryption_key",
    "new_secret",
    "read_env_file",
    "weak_secrets",
    "write_env_values",
]


SIGNING_SECRETS = {
    "SESSION_SECRET": "PAULYOPS_SESSION_SECRETS_PREVIOUS",
    "JWT_SECRET": "PAULYOPS_JWT_SECRETS_PREVIOUS",
}


def rotate_signing_secrets(env_path: Path) -> dict[str, str]:
    """Give SESSION_SECRET and JWT_SECRET new values, keeping the old ones as previous.

    Tokens signed with an old secret (pre-session form tokens, one-time links) keep
    verifying until the operator removes it from the ``*_PREVIOUS`` variable; sessions
    themselves are random ids and are not affected. Returns the changed ``KEY=value``
    pairs (secret: show them only to the operator).

    Raises:
        ConfigError: ``env_path`` is missing or has no secrets to rotate.
    """
    if not env_path.is_file():
        raise ConfigError(f"{env_path}: expected the instance's .env.local, found nothing")
    values = read_env_file(env_path)
    changed: dict[str, str] = {}
    for name, previous_name in SIGNING_SECRETS.items():
        old = values.get(name)
        if not old:
            raise ConfigError(f"{name}: expected a value in {env_path} to rotate, got nothing")
        older = [item for item in _csv(values.get(previous_name, "")) if item != old]
        changed[name] = new_secret()
        changed[previous_name] = ",".join([old, *older][:3])
    update_env_file(env_path, changed)
    return changed
