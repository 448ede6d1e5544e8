from __future__ import annotations

import os
import stat

import pytest

from evalwatch.settings import Settings


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
