"""Configuration for evalwatch, read from ``EVALWATCH_*`` variables and an optional YAML file.

Secrets are :class:`pydantic.SecretStr` so they never print in logs, reprs or artifacts.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = [
    "IngestSettings",
    "JudgeSettings",
    "Settings",
    "SettingsError",
    "TargetSettings",
    "get_settings",
    "reset_settings",
]


class IngestSettings(BaseModel):
    """Bounds and behaviour of traffic ingest and validation."""

    redact: bool = Field(True, description="Redact PII and secrets before anything is stored.")
    max_prompt_chars: int = Field(2_000_000, description="Longest prompt accepted, in characters.")
    max_response_chars: int = Field(2_000_000, description="Longest response accepted.")
    min_prompt_chars: int = Field(1, description="Shortest prompt accepted (empty prompts fail).")
    rating_min: int = Field(1, description="Lowest valid user rating.")
    rating_max: int = Field(5, description="Highest valid user rating.")
    max_future_skew_s: float = Field(
        300.0, description="How far past 'now' a timestamp may be before it counts as future."
    )
    chunk_size: int = Field(20_000, description="Rows validated and committed per chunk.")


class JudgeSettings(BaseModel):
    """Where and how the LLM judge is called. Falls back to ``OPENAI_*`` variables."""

    base_url: str | None = Field(
        None, description="OpenAI-compatible base URL, e.g. http://host/v1."
    )
    model: str | None = Field(None, description="Judge model name.")
    api_key: SecretStr | None = Field(None, description="API key; never logged or stored.")
    api_key_block: str | None = Field(
        None, description="Name of a Prefect Secret block holding the key."
    )
    timeout_s: float = Field(60.0, description="Per-request timeout in seconds.")
    max_retries: int = Field(3, description="Retries for 429, 5xx and timeouts.")
    concurrency: int = Field(16, description="Concurrent requests in flight.")
    budget_usd: float | None = Field(None, description="Stop new calls once a run spent this much.")
    redact: bool = Field(True, description="Redact text before it leaves for an external judge.")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Model -> (USD per 1M input tokens, USD per 1M output tokens).",
    )

    def resolved_base_url(self) -> str | None:
        """The configured base URL, else ``OPENAI_BASE_URL``."""
        return self.base_url or os.environ.get("OPENAI_BASE_URL")

    def resolved_api_key(self) -> SecretStr | None:
        """The configured key, else a Prefect Secret block, else ``OPENAI_API_KEY``."""
        if self.api_key is not None:
            return self.api_key
        if self.api_key_block:
            from prefect.blocks.system import Secret

            value = Secret.load(self.api_key_block).get()  # type: ignore[union-attr]
            return SecretStr(str(value))
        env = os.environ.get("OPENAI_API_KEY")
        return SecretStr(env) if env else None


class TargetSettings(BaseModel):
    """The model under test, called through an OpenAI-compatible endpoint by evaluate_dataset."""

    base_url: str | None = Field(None, description="OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="API key; never logged or stored.")
    timeout_s: float = Field(60.0, description="Per-request timeout in seconds.")
    max_retries: int = Field(3, description="Retries for 429, 5xx and timeouts.")
    concurrency: int = Field(8, description="Concurrent requests in flight.")
    temperature: float = Field(0.0, description="Sampling temperature.")
    max_tokens: int = Field(512, description="Longest answer requested.")
    system_prompt: str | None = Field(None, description="System message sent before each input.")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Model -> (USD per 1M input tokens, USD per 1M output tokens).",
    )


class Settings(BaseSettings):
    """All evalwatch settings.

    Values come, highest priority first, from init arguments, ``EVALWATCH_*`` environment
    variables (nested with ``__``, e.g. ``EVALWATCH_JUDGE__MODEL``), the YAML file named by
    ``EVALWATCH_CONFIG_FILE``, then defaults.

    Examples:
        >>> Settings(database_url="sqlite:///x.db").database_url
        'sqlite:///x.db'
    """

    model_config = SettingsConfigDict(
        env_prefix="EVALWATCH_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field("sqlite:///evalwatch.db", description="SQLAlchemy URL of the store.")
    config_file: Path | None = Field(None, description="Optional YAML file with more settings.")
    hash_key: SecretStr | None = Field(
        None,
        description="Key for hashing user and session ids. Without one a random key is created "
        "once in ~/.evalwatch/hash.key; set it explicitly when several machines ingest.",
    )
    home: Path = Field(Path.home() / ".evalwatch", description="Local state folder.")
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    target: TargetSettings = Field(default_factory=TargetSettings)
    evaluator_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-evaluator config, e.g. {'embedding': {...}}."
    )
    rules_file: Path | None = Field(None, description="Alert rules YAML file.")
    task_runner: Literal["default", "dask"] = Field(
        "default", description="Prefect task runner for the flows."
    )
    dask_workers: int = Field(2, description="Local Dask workers when task_runner is 'dask'.")
    dask_address: str | None = Field(
        None, description="Address of an existing Dask scheduler (instead of a local cluster)."
    )
    report_dir: Path | None = Field(
        None,
        description="Reports root: each store's reports go in <report_dir>/<store key>/. "
        "Unset: beside a SQLite store (<store folder>/reports/), else ~/.evalwatch/reports/<key>/ "
        "(see reporting.location).",
    )
    report_base_url: str | None = Field(
        None,
        description="http(s) address at which the reports root is served; reports under it "
        "get a Prefect link artifact (file:// links do not open from the Prefect UI).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the optional YAML file below the environment."""
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _FlatJudgeEnv(settings_cls),
        ]
        config_file = os.environ.get("EVALWATCH_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"EVALWATCH_CONFIG_FILE={config_file} does not exist")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    def resolved_hash_key(self) -> bytes:
        """The key used for hashing user/session ids, created on first use if unset."""
        if self.hash_key is not None:
            return self.hash_key.get_secret_value().encode()
        path = self.home / "hash.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


class _FlatJudgeEnv(PydanticBaseSettingsSource):
    """Reads ``EVALWATCH_JUDGE_BASE_URL``-style names (single underscore) for the judge.

    The nested form ``EVALWATCH_JUDGE__BASE_URL`` wins when both are set.
    """

    _FIELDS = (
        "base_url",
        "model",
        "api_key",
        "timeout_s",
        "max_retries",
        "concurrency",
        "budget_usd",
        "api_key_block",
    )

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        judge = {
            name: os.environ[f"EVALWATCH_JUDGE_{name.upper()}"]
            for name in self._FIELDS
            if f"EVALWATCH_JUDGE_{name.upper()}" in os.environ
        }
        return {"judge": judge} if judge else {}


class SettingsError(ValueError):
    """A setting (environment variable or config file) has a value evalwatch cannot use."""


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable for a settings field path.

    Examples:
        >>> _setting_name(("judge", "timeout_s"))
        'EVALWATCH_JUDGE__TIMEOUT_S'
    """
    return "EVALWATCH_" + "__".join(str(p).upper() for p in loc)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once.

    Raises:
        SettingsError: A setting is invalid or the config file is missing; the message names
            the variable (the same field may also come from ``EVALWATCH_CONFIG_FILE``).
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{_setting_name(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"bad setting: {problems}") from exc
    except FileNotFoundError as exc:  # EVALWATCH_CONFIG_FILE names no file
        raise SettingsError(str(exc)) from exc


def reset_settings() -> None:
    """Forget cached settings (after changing the environment, e.g. in tests)."""
    get_settings.cache_clear()
