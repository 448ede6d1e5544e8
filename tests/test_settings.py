from __future__ import annotations

import os
import stat

import pytest

from evalwatch.evaluators.judge import endpoint_configured
from evalwatch.settings import JudgeSettings, Settings, SettingsError, get_settings


def test_env_prefix_nested_and_flat_judge_names(monkeypatch):
    monkeypatch.setenv("EVALWATCH_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("EVALWATCH_JUDGE_MODEL", "flat-model")
    monkeypatch.setenv("EVALWATCH_JUDGE_API_KEY", "sk-secret-value-123")
    monkeypatch.setenv("EVALWATCH_INGEST__CHUNK_SIZE", "77")
    s = Settings()
    assert s.database_url == "sqlite:///x.db"
    assert s.judge.model == "flat-model"
    assert s.ingest.chunk_size == 77
    assert s.judge.api_key is not None
    assert s.judge.api_key.get_secret_value() == "sk-secret-value-123"
    # Secrets never show in reprs or dumps.
    assert "sk-secret-value-123" not in repr(s)
    assert "sk-secret-value-123" not in s.model_dump_json()
    monkeypatch.setenv("EVALWATCH_JUDGE__MODEL", "nested-model")
    assert Settings().judge.model == "nested-model"


def test_yaml_config_file_sits_below_the_environment(monkeypatch, tmp_path):
    cfg = tmp_path / "evalwatch.yaml"
    cfg.write_text(
        "database_url: sqlite:///from-file.db\n"
        "evaluator_options:\n  heuristics: {refusal_phrases: ['nope']}\n"
        "judge: {model: file-model}\n"
    )
    monkeypatch.setenv("EVALWATCH_CONFIG_FILE", str(cfg))
    s = Settings()
    assert s.database_url == "sqlite:///from-file.db"
    assert s.evaluator_options["heuristics"]["refusal_phrases"] == ["nope"]
    monkeypatch.setenv("EVALWATCH_DATABASE_URL", "sqlite:///from-env.db")
    assert Settings().database_url == "sqlite:///from-env.db"
    monkeypatch.setenv("EVALWATCH_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        Settings()


def test_hash_key_is_created_once_with_private_permissions(tmp_path, monkeypatch):
    monkeypatch.delenv("EVALWATCH_HASH_KEY", raising=False)
    s = Settings(home=tmp_path / "home")
    key = s.resolved_hash_key()
    assert len(key) == 64 and key == Settings(home=tmp_path / "home").resolved_hash_key()
    mode = stat.S_IMODE(os.stat(tmp_path / "home" / "hash.key").st_mode)
    assert mode == 0o600
    assert Settings(hash_key="given").resolved_hash_key() == b"given"


def test_flat_judge_names_cover_every_field_prices_included(monkeypatch):
    monkeypatch.setenv("EVALWATCH_JUDGE_PRICES", '{"judge-1": [1.5, 6]}')
    monkeypatch.setenv("EVALWATCH_JUDGE_BUDGET_USD", "2.5")
    monkeypatch.setenv("EVALWATCH_JUDGE_REDACT", "false")
    j = Settings().judge
    assert j.prices == {"judge-1": (1.5, 6.0)}
    assert j.budget_usd == 2.5 and j.redact is False
    # The judge section reads the same names standalone.
    assert JudgeSettings().prices == j.prices


def test_openai_names_are_the_fallback_for_url_and_key(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.example/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-0123456789")
    j = Settings().judge
    assert j.base_url == "http://openai.example/v1"
    assert j.api_key is not None and j.api_key.get_secret_value() == "sk-openai-0123456789"
    assert "sk-openai-0123456789" not in repr(j)
    monkeypatch.setenv("EVALWATCH_JUDGE_BASE_URL", "http://flat/v1")
    assert Settings().judge.base_url == "http://flat/v1"
    monkeypatch.setenv("EVALWATCH_JUDGE__BASE_URL", "http://nested/v1")
    assert Settings().judge.base_url == "http://nested/v1"


def test_judge_precedence_code_nested_flat_openai_then_file(monkeypatch, tmp_path):
    cfg = tmp_path / "evalwatch.yaml"
    cfg.write_text(
        "judge: {model: file-model, base_url: 'http://file/v1', concurrency: 3, timeout_s: 9}\n"
    )
    monkeypatch.setenv("EVALWATCH_CONFIG_FILE", str(cfg))
    j = Settings().judge
    assert (j.model, j.base_url, j.concurrency, j.timeout_s) == (
        "file-model",
        "http://file/v1",
        3,
        9.0,
    )
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai/v1")
    monkeypatch.setenv("EVALWATCH_JUDGE_MODEL", "flat-model")
    monkeypatch.setenv("EVALWATCH_JUDGE_CONCURRENCY", "5")
    monkeypatch.setenv("EVALWATCH_JUDGE__CONCURRENCY", "7")
    j = Settings().judge
    # Every variable outranks the file; nested outranks flat; the file fills the rest.
    assert (j.model, j.base_url, j.concurrency, j.timeout_s) == (
        "flat-model",
        "http://openai/v1",
        7,
        9.0,
    )
    assert Settings(judge={"model": "code-model"}).judge.model == "code-model"
    assert JudgeSettings(concurrency=1).concurrency == 1


def test_bad_flat_judge_value_names_the_variable_that_was_set(monkeypatch):
    monkeypatch.setenv("EVALWATCH_JUDGE_TIMEOUT_S", "soon")
    with pytest.raises(SettingsError, match="EVALWATCH_JUDGE_TIMEOUT_S:"):
        get_settings()


def test_loading_settings_reads_no_hash_key_file_and_no_prefect_block(monkeypatch, tmp_path):
    from prefect.blocks.system import Secret

    calls: list[str] = []

    def load(name: str, *args: object, **kwargs: object) -> object:
        calls.append(name)
        raise RuntimeError("no Prefect server here")

    monkeypatch.setattr(Secret, "load", load)
    monkeypatch.delenv("EVALWATCH_HASH_KEY", raising=False)
    monkeypatch.setenv("EVALWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVALWATCH_JUDGE_MODEL", "judge-1")
    monkeypatch.setenv("EVALWATCH_JUDGE_API_KEY_BLOCK", "judge-key")
    s = Settings()
    assert s.judge.api_key_block == "judge-key"
    assert endpoint_configured(s.judge)  # a block counts as a key without being read
    assert not (tmp_path / "home").exists() and calls == []
    with pytest.raises(RuntimeError, match="no Prefect server"):
        s.judge.resolved_api_key()  # read when first needed
    assert calls == ["judge-key"]
    assert len(s.resolved_hash_key()) == 64 and (tmp_path / "home" / "hash.key").is_file()
