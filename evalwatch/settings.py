"""Configuration for evalwatch, read from ``EVALWATCH_*`` variables and an optional YAML file.

Secrets are :class:`pydantic.SecretStr` so they never print in logs, reprs or artifacts.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = [
    "DPSettings",
    "FairnessSettings",
    "IngestSettings",
    "JudgeSettings",
    "PrivacySettings",
    "Settings",
    "SettingsError",
    "TargetSettings",
    "TelemetrySettings",
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
    max_line_bytes: int = Field(
        8_000_000,
        gt=0,
        description=(
            "Longest input line, CSV field, Parquet cell or OTLP document read, in bytes; a "
            "longer one is quarantined with its length, hash and first bytes, never loaded."
        ),
    )


def _config_file() -> Path | None:
    """The YAML file named by ``EVALWATCH_CONFIG_FILE``, if any.

    Raises:
        FileNotFoundError: The variable names no file.
    """
    config_file = os.environ.get("EVALWATCH_CONFIG_FILE")
    if not config_file:
        return None
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"EVALWATCH_CONFIG_FILE={config_file} does not exist")
    return path


def _read_yaml(settings_cls: type[BaseSettings], path: Path) -> dict[str, Any]:
    """The YAML file's top-level mapping (empty for an empty file)."""
    return dict(YamlConfigSettingsSource(settings_cls, yaml_file=path).yaml_data)


def _judge_env(field: str, *fallbacks: str) -> AliasChoices:
    """Where a judge setting is read, most specific first (see :class:`JudgeSettings`).

    Examples:
        >>> _judge_env("model").choices
        ['model', 'EVALWATCH_JUDGE__MODEL', 'EVALWATCH_JUDGE_MODEL']
    """
    name = field.upper()
    return AliasChoices(field, f"EVALWATCH_JUDGE__{name}", f"EVALWATCH_JUDGE_{name}", *fallbacks)


class JudgeSettings(BaseSettings):
    """Where and how the LLM judge is called.

    Each field ``x`` is read, highest priority first, from: a value passed in code (or the
    ``judge`` of :class:`Settings` built with one); ``EVALWATCH_JUDGE__X`` (the nested form,
    which wins as it always has); ``EVALWATCH_JUDGE_X``; for ``base_url`` and ``api_key``,
    ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``; the ``judge:`` section of the
    ``EVALWATCH_CONFIG_FILE`` YAML file; the default. Every environment variable outranks the
    file, as for every other setting, and the more specific name outranks the generic one.

    Loading reads nothing but the environment and that file: the Prefect Secret block named
    by ``api_key_block`` is read by :meth:`resolved_api_key`, when a key is first needed.

    Examples:
        >>> JudgeSettings(model="m", prices={"m": (1.0, 2.0)}).prices
        {'m': (1.0, 2.0)}
    """

    model_config = SettingsConfigDict(extra="ignore", validate_by_name=True)

    base_url: str | None = Field(
        None,
        validation_alias=_judge_env("base_url", "OPENAI_BASE_URL"),
        description="OpenAI-compatible base URL, e.g. http://host/v1.",
    )
    model: str | None = Field(
        None, validation_alias=_judge_env("model"), description="Judge model name."
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=_judge_env("api_key", "OPENAI_API_KEY"),
        description="API key; never logged or stored.",
    )
    api_key_block: str | None = Field(
        None,
        validation_alias=_judge_env("api_key_block"),
        description="Name of a Prefect Secret block holding the key (when api_key is unset).",
    )
    timeout_s: float = Field(
        60.0,
        validation_alias=_judge_env("timeout_s"),
        description="Per-request timeout in seconds.",
    )
    max_retries: int = Field(
        3,
        validation_alias=_judge_env("max_retries"),
        description="Retries for 429, 5xx and timeouts.",
    )
    concurrency: int = Field(
        16, validation_alias=_judge_env("concurrency"), description="Concurrent requests in flight."
    )
    budget_usd: float | None = Field(
        None,
        validation_alias=_judge_env("budget_usd"),
        description="Stop new calls once a run spent this much.",
    )
    redact: bool = Field(
        True,
        validation_alias=_judge_env("redact"),
        description="Redact text before it leaves for an external judge.",
    )
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        validation_alias=_judge_env("prices"),
        description="Model -> (USD per 1M input tokens, USD per 1M output tokens).",
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
        """Code, then the environment, then the YAML file's ``judge:`` section."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            section = _read_yaml(settings_cls, path).get(_JUDGE)
            if isinstance(section, dict):
                sources.append(InitSettingsSource(settings_cls, init_kwargs=section))
        return tuple(sources)

    def has_key(self) -> bool:
        """Whether a key is configured (directly or as a Prefect block), without reading it."""
        return self.api_key is not None or self.api_key_block is not None

    def resolved_api_key(self) -> SecretStr | None:
        """The configured key, else the Prefect Secret block's (read now, on first need)."""
        if self.api_key is not None:
            return self.api_key
        if self.api_key_block:
            from prefect.blocks.system import Secret

            value = Secret.load(self.api_key_block).get()  # type: ignore[union-attr]
            return SecretStr(str(value))
        return None


#: The Settings field (and YAML section) that :class:`JudgeSettings` reads for itself.
_JUDGE = "judge"


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


class TelemetrySettings(BaseModel):
    """Serving-fleet and engine metrics: scrape targets, cadence, retention (issue #16)."""

    # TELEMETRY-FIELDS (owned by the telemetry work)


class PrivacySettings(BaseModel):
    """Opt-outs and forgetting (issue #17); text retention lives in ``ingest``."""

    # PRIVACY-FIELDS (owned by the privacy work)


class DPSettings(BaseModel):
    """Differential privacy for aggregates that leave the team (issue #17)."""

    # DP-FIELDS (owned by the DP work)


class FairnessSettings(BaseModel):
    """Segments and thresholds of fairness monitoring (issue #17)."""

    # FAIRNESS-FIELDS (owned by the fairness work)


class Settings(BaseSettings):
    """All evalwatch settings.

    Values come, highest priority first, from init arguments, ``EVALWATCH_*`` environment
    variables (nested with ``__``, e.g. ``EVALWATCH_INGEST__CHUNK_SIZE``), the YAML file named
    by ``EVALWATCH_CONFIG_FILE``, then defaults. The judge section is its own settings class
    with the same order and a few more names (see :class:`JudgeSettings`).

    Loading has no side effects: the hash-key file is read (or created) by
    :meth:`resolved_hash_key` and the judge's Prefect Secret block by
    :meth:`JudgeSettings.resolved_api_key`, when first needed.

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
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    dp: DPSettings = Field(default_factory=DPSettings)
    fairness: FairnessSettings = Field(default_factory=FairnessSettings)
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
        """Add the optional YAML file below the environment.

        The file's ``judge:`` section is left to :class:`JudgeSettings`, which reads it below
        its own environment names: given here it would be a value passed in code, and would
        outrank ``EVALWATCH_JUDGE_*``.
        """
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            data = _read_yaml(settings_cls, path)
            if isinstance(data.get(_JUDGE), dict):
                data = {k: v for k, v in data.items() if k != _JUDGE}
            sources.append(InitSettingsSource(settings_cls, init_kwargs=data))
        return tuple(sources)

    def resolved_hash_key(self) -> bytes:
        """The key used for hashing user/session ids, created on first use if unset.

        Read (and created) only here, never when settings load.
        """
        if self.hash_key is not None:
            return self.hash_key.get_secret_value().encode()
        path = self.home / "hash.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


class SettingsError(ValueError):
    """A setting (environment variable or config file) has a value evalwatch cannot use."""


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable for a settings field path (for a judge field, the one set).

    Examples:
        >>> _setting_name(("judge", "timeout_s"))
        'EVALWATCH_JUDGE__TIMEOUT_S'
    """
    if len(loc) == 2 and loc[0] == _JUDGE and str(loc[1]) in JudgeSettings.model_fields:
        alias = JudgeSettings.model_fields[str(loc[1])].validation_alias
        if isinstance(alias, AliasChoices):
            for name in alias.choices[1:]:
                if isinstance(name, str) and name in os.environ:
                    return name
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
        # The judge section built from its own variables fails as itself, without the prefix.
        outer: tuple[str, ...] = (_JUDGE,) if exc.title == JudgeSettings.__name__ else ()
        problems = "; ".join(
            f"{_setting_name((*outer, *e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"bad setting: {problems}") from exc
    except FileNotFoundError as exc:  # EVALWATCH_CONFIG_FILE names no file
        raise SettingsError(str(exc)) from exc


def reset_settings() -> None:
    """Forget cached settings (after changing the environment, e.g. in tests)."""
    get_settings.cache_clear()
