"""Environment settings, read once at start and passed down (no module reads os.environ)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import PACKAGE_ROOT

DEFAULT_CONFIG = PACKAGE_ROOT / "examples" / "acme" / "concierge.yaml"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class Settings(BaseSettings):
    """Process settings from the environment (and a ``.env`` file in the working directory).

    Secrets are ``SecretStr`` so that they never print in logs or reprs.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = Field(default="concierge:", alias="CONCIERGE_REDIS_PREFIX")
    concierge_config: Path = DEFAULT_CONFIG
    data_dir: Path = Field(default=Path("data"), alias="CONCIERGE_DATA_DIR")
    index_refresh_s: float = Field(default=10.0, ge=0, alias="CONCIERGE_INDEX_REFRESH_S")
    port: int = 3000
    host: str = Field(default="0.0.0.0", alias="CONCIERGE_HOST")
    slack_native_streaming: bool = Field(default=True, alias="CONCIERGE_SLACK_NATIVE_STREAMING")
    # The per-workspace Slack write budget shared by all answers in flight (calls a minute,
    # bursts allowed; bot/slack/pacing.py). Defaults: Slack's documented tier floors.
    slack_update_per_minute: float = Field(
        default=50, gt=0, alias="CONCIERGE_SLACK_UPDATES_PER_MIN"
    )
    slack_append_per_minute: float = Field(
        default=100, gt=0, alias="CONCIERGE_SLACK_APPENDS_PER_MIN"
    )
    slack_streams_per_minute: float = Field(
        default=20, gt=0, alias="CONCIERGE_SLACK_STREAMS_PER_MIN"
    )
    # One answer's intermediate writes are at least this far apart (its last is not).
    slack_write_interval_s: float = Field(
        default=1.0, ge=0, alias="CONCIERGE_SLACK_WRITE_INTERVAL_S"
    )
    # Answers worked on at once per process; more wait in a queue (in arrival order) so that
    # acks and /healthz stay fast under a burst (bot/slack/admission.py).
    max_answers: int = Field(default=32, ge=1, alias="CONCIERGE_MAX_ANSWERS")
    shutdown_grace_s: float = Field(default=30, ge=0, alias="CONCIERGE_SHUTDOWN_GRACE_S")
    # Active grants are re-read at least this often (and at once after any access change).
    access_cache_s: float = Field(default=60.0, ge=0, alias="CONCIERGE_ACCESS_CACHE_S")
    # Run the scheduled jobs in this instance (each job still runs once across instances).
    scheduler: bool = Field(default=True, alias="CONCIERGE_SCHEDULER")
    # Database calls: connecting, and each statement (and lock wait), give up after these; a
    # question is then answered anyway and its record spooled (bot/store/spool.py).
    db_connect_timeout_s: float = Field(default=3.0, gt=0, alias="CONCIERGE_DB_CONNECT_TIMEOUT_S")
    db_timeout_s: float = Field(default=5.0, gt=0, alias="CONCIERGE_DB_TIMEOUT_S")
    # Grants last read from the database keep serving this long while it is unreachable;
    # after that only the config's readers count (fail closed).
    grants_stale_s: float = Field(default=300.0, ge=0, alias="CONCIERGE_GRANTS_STALE_S")
    # Redis calls on the request path give up after this (then local state answers).
    redis_timeout_s: float = Field(default=0.5, gt=0, alias="CONCIERGE_REDIS_TIMEOUT_S")
    log_level: str = "WARNING"
    log_format: str = Field(default="text", pattern="^(?i)(text|json)$")  # LOG_FORMAT
    # Spans go here over OTLP/HTTP when set (the exporter reads the other OTEL_* variables).
    otel_exporter_otlp_endpoint: str | None = None
    metrics_port: int | None = None  # Socket Mode: /metrics, /healthz and /readyz on this port

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        import difflib
        import logging

        names = [n for n in logging.getLevelNamesMapping() if n != "NOTSET"]
        if value.strip().upper() in names:
            return value.strip().upper()
        near = difflib.get_close_matches(value.strip().upper(), names, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ValueError(f"{value!r} is not a log level: {hint}use DEBUG, INFO, WARNING or ERROR")

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins base_url and method name; it needs exactly one slash between them.
        return value.rstrip("/") + "/"

    def secrets_named(self, names: list[str]) -> dict[str, str]:
        """Credentials a config names by environment variable (an http source's auth_env).

        The one place besides the fields above where the environment is read; the config
        file only ever holds the variable's name, never its value.
        """
        import os

        return {n: os.environ[n] for n in names if n and n in os.environ}

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'concierge.db').resolve()}"

    @property
    def spool_dir(self) -> Path:
        """Where records that could not reach the database wait for it (bot/store/spool.py)."""
        return self.data_dir / "spool"

    @property
    def index_dir(self) -> Path:
        """Where derived search indexes live (local data, never in DATABASE_URL)."""
        return self.data_dir / "index"
