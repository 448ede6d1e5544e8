"""Configuration for evalwatch, read from ``EVALWATCH_*`` variables and an optional YAML file.

Secrets are :class:`pydantic.SecretStr` so they never print in logs, reprs or artifacts.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from evalwatch.core.durations import parse_duration

__all__ = [
    "DPSettings",
    "FairnessSettings",
    "IngestSettings",
    "JudgeSettings",
    "PrivacySettings",
    "ScrapeTarget",
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
    text_retention: str | None = Field(
        None,
        description="Keep prompt/response/context/reference text this long (e.g. 7d), then "
        "keep only its length and SHA-256 (`evalwatch db prune`, `evalwatch privacy enforce`); "
        "scores, embeddings and metadata stay. Unset: text is kept as long as the interaction.",
    )
    text_mode: Literal["full", "metadata_only"] = Field(
        "full",
        description="metadata_only: store no text at all (length and SHA-256 only) and score at "
        "ingest with privacy.ingest_evaluators.",
    )

    @field_validator("text_retention")
    @classmethod
    def _retention_is_a_duration(cls, value: str | None) -> str | None:
        # Checked when settings load, so a typo fails every command, not the first prune.
        if value is not None:
            parse_duration(value)
        return value


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


class ScrapeTarget(BaseModel):
    """One metrics endpoint the ``collect-metrics`` flow scrapes."""

    name: str = Field(description="Short name, shown in flow logs and summaries.")
    url: str = Field(description="The /metrics URL (Prometheus text) or an OTLP JSON URL.")
    source: Literal["auto", "dcgm", "vllm", "otlp", "prometheus"] = Field(
        "auto", description="What serves it; auto tells by the metric names."
    )
    host: str | None = Field(
        None, description="Host the series belong to when no label says (default: URL host)."
    )


def _default_anomaly_series() -> list[str]:
    """Every canonical gauge and counter series, and the p95 of every histogram series."""
    from evalwatch.core.telemetry import TELEMETRY_METRICS, SeriesKind

    return [
        name.removesuffix("_seconds") + "_p95" if m.kind == SeriesKind.histogram else name
        for name, m in TELEMETRY_METRICS.items()
    ]


class TelemetrySettings(BaseModel):
    """Serving-fleet and engine metrics: scrape targets, cadence, retention (issue #16)."""

    targets: list[ScrapeTarget] = Field(
        default_factory=list, description="Endpoints the collect-metrics flow scrapes."
    )
    interval: str = Field("1m", description="Sampling cadence of `evalwatch collect gpu`.")
    timeout_s: float = Field(5.0, gt=0, description="Per-scrape HTTP timeout, in seconds.")
    retention: str = Field(
        "30d", description="Metric samples older than this are deleted by `evalwatch db prune`."
    )
    max_scrape_bytes: int = Field(
        50_000_000, gt=0, description="Largest scrape response read; a larger one is refused."
    )
    anomaly_series: list[str] = Field(
        default_factory=lambda: _default_anomaly_series(),
        description="Metric selectors judged for anomalies by `evalwatch collect anomalies` "
        "and the collect-metrics flow: gauges and counter rates by name, histograms as a "
        "percentile (engine.ttft_p95). Default: every canonical gauge and counter, histogram p95s.",
    )
    anomaly_window: str = Field(
        "1h", description="Complete windows judged for anomalies at each run (the newest ones)."
    )
    anomaly_history: str = Field(
        "7d", description="History before the judged windows that the anomaly baseline uses."
    )
    anomaly_freq: Literal["hour", "day"] = Field(
        "hour", description="Anomaly windows: hourly (seasonal by hour of day) or daily."
    )
    anomaly_threshold: float | None = Field(
        None,
        gt=0,
        description="Robust z cut; default: the Bonferroni cut for the windows judged at "
        "alpha 0.05 (at least 3.5), as the drift job's anomalies.",
    )


class PrivacySettings(BaseModel):
    """Opt-outs and forgetting (issue #17); text retention lives in ``ingest``."""

    ingest_evaluators: list[str] = Field(
        default_factory=lambda: ["heuristics", "toxicity"],
        description="Evaluators that score each interaction at ingest when ingest.text_mode is "
        "metadata_only (no text is stored, so nothing can be scored later).",
    )
    forget_batch_size: int = Field(
        2_000,
        gt=0,
        description="Interactions deleted per transaction by `evalwatch privacy forget`.",
    )


class DPSettings(BaseModel):
    """Differential privacy for aggregates that leave the team (issue #17)."""

    default_budget: float = Field(
        10.0,
        gt=0,
        description="Total epsilon each dataset may spend over all its releases (a dataset "
        "is 'traffic', 'traffic:<app>' or a name given with --dataset).",
    )
    budgets: dict[str, float] = Field(
        default_factory=dict,
        description="Dataset -> total epsilon, overriding default_budget for that dataset.",
    )
    max_contributions_per_day: int = Field(
        2,
        ge=1,
        description="k: a user's interactions counted per day and cell (more are dropped, the "
        "earliest kept), so one user moves a daily count by at most k.",
    )
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "cost": (0.0, 0.05),
            "latency_ms": (0.0, 30000.0),
            "rating": (1.0, 5.0),
        },
        description="Value -> (low, high) clamp bounds of the values whose means are released; "
        "evaluator scores use their metric's declared range, else (0, 1).",
    )
    max_epsilon_per_release: float = Field(
        5.0, gt=0, description="Largest --dp-epsilon one release may ask for."
    )

    @field_validator("bounds")
    @classmethod
    def _check_bounds(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        bad = [f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in v.items() if not lo < hi]
        if bad:
            raise ValueError(f"dp.bounds: low must be below high: {', '.join(bad)}")
        return v

    @field_validator("budgets")
    @classmethod
    def _check_budgets(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [f"{k}={e:g}" for k, e in v.items() if not e > 0]
        if bad:
            raise ValueError(f"dp.budgets must be positive: {', '.join(bad)}")
        return v

    def budget_for(self, dataset: str) -> float:
        """The total epsilon of ``dataset``.

        Examples:
            >>> DPSettings(budgets={"traffic:shop": 3.0}).budget_for("traffic:shop")
            3.0
        """
        return self.budgets.get(dataset, self.default_budget)


class FairnessSettings(BaseModel):
    """Segments and thresholds of fairness monitoring (issue #17)."""

    segment_fields: list[str] = Field(
        default_factory=lambda: ["language", "region", "user_tier"],
        description="Interaction (or test-set item) metadata fields whose values are segments; "
        "'language' falls back to the language detected from the prompt.",
    )
    min_segment_size: int = Field(
        30, ge=2, description="Fewer rows than this in a segment (or its rest): insufficient data."
    )
    fdr: float = Field(0.05, gt=0.0, lt=0.5, description="False discovery rate per report.")
    correction: Literal["by", "bh"] = Field(
        "by",
        description="by: Benjamini-Yekutieli (holds for the negatively dependent "
        "segment-vs-rest tests); bh: Benjamini-Hochberg (more power, about 7% false-alarm "
        "reports under no gap in the calibration).",
    )
    max_segments: int = Field(
        20, ge=1, description="Largest segments tested per field; smaller ones are left out."
    )
    gate_margin: float = Field(
        0.05,
        ge=0.0,
        description="Gate: a segment's gap may widen by this much (metric units) before it fails.",
    )
    max_detect_at_check: int = Field(
        5_000,
        ge=0,
        description="At most this many interactions without a stored language are detected "
        "when a check runs (older rows); more are left out of the language comparison.",
    )
    detect_language: bool = Field(
        True,
        description="Detect the prompt's language at ingest (py3langid) into metadata "
        "'detected_language', so the segment survives text retention.",
    )


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
