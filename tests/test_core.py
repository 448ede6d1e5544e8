"""evalwatch.core: the one duration parser, the shared vocabulary, and its lack of dependencies."""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import grimp
import pytest

from evalwatch.checks.rules import Rule
from evalwatch.commands.common import parse_time
from evalwatch.core import (
    ACTIVE_ALERT_STATUSES,
    AlertStatus,
    Redactor,
    RunStatus,
    ScoreStatus,
    SubjectType,
    parse_duration,
)
from evalwatch.evaluators.base import Sample, ScoreResult


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("36h", timedelta(hours=36)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 30 m ", timedelta(minutes=30)),
        ("1H", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1d 12h", timedelta(hours=36)),
        ("0s", timedelta(0)),
        # Numbers are seconds (YAML's `delay: 90`), as alert rules always took them.
        (0, timedelta(0)),
        (90, timedelta(seconds=90)),
        (2.5, timedelta(seconds=2.5)),
        (timedelta(hours=2), timedelta(hours=2)),
    ],
)
def test_accepted_durations(text: str | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5x", "bad duration '5x'; use a number and one of s, m, h, d, w"),
        ("soon", "bad duration 'soon'; use a number and one of s, m, h, d, w"),
        ("", "bad duration ''; use"),
        ("h", "bad duration 'h'; use"),
        ("1h30", "bad duration '1h30'; use"),
        ("-1h", "bad duration '-1h'; use"),
        # A unit forgotten on the command line is not silently read as seconds.
        ("90", "bad duration '90': give a unit, e.g. 90s or 90m"),
        (-1, "bad duration -1: must be a finite number of seconds, >= 0"),
        (float("nan"), "bad duration nan: must be a finite number"),
        (float("inf"), "bad duration inf: must be a finite number"),
        (True, "bad duration True; use"),
        (None, "bad duration None; use"),
        (["1h"], "bad duration ['1h']; use"),
        (timedelta(seconds=-1), "must not be negative"),
        ("9" * 400 + "w", "too long"),
    ],
)
def test_bad_durations_say_what_to_write(text: object, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)  # type: ignore[arg-type]
    assert message in str(exc.value)


def test_the_cli_and_the_alert_rules_share_the_parser() -> None:
    now = datetime(2026, 11, 8, 12, tzinfo=UTC)
    # The syntax the rules' parser had (numbers) and the one it gained (compound durations)
    # now work on the command line and in rules alike.
    assert parse_time("1h30m", now) == now - timedelta(minutes=90)
    rule = Rule.model_validate(
        {
            "name": "r1",
            "selector": "volume",
            "comparison": "<",
            "threshold": 1,
            "window": "1h30m",
            "delay": 90,
            "cooldown": "1d 12h",
        }
    )
    assert rule.window_width == timedelta(minutes=90)
    assert rule.delay_td == timedelta(seconds=90)
    assert rule.cooldown_td == timedelta(hours=36)
    with pytest.raises(ValueError, match="bad time"):
        parse_time("90", now)


def test_vocabulary_values() -> None:
    assert [t.value for t in SubjectType] == ["interaction", "output"]
    assert [s.value for s in ScoreStatus] == ["ok", "error", "skipped"]
    assert [s.value for s in RunStatus] == ["running", "completed", "failed"]
    assert [s.value for s in AlertStatus] == ["open", "acknowledged", "resolved"]
    assert set(ACTIVE_ALERT_STATUSES) == {"open", "acknowledged"}
    # psycopg writes an Enum by its *name*, SQLite and JSON by its value: they must agree.
    for enum in (SubjectType, ScoreStatus, RunStatus, AlertStatus):
        assert issubclass(enum, StrEnum)
        assert all(member.name == member.value for member in enum), enum


def test_samples_and_results_hold_subject_types() -> None:
    sample = Sample(subject_id=1, prompt="p", response="r")
    assert sample.subject_type is SubjectType.interaction
    assert Sample(subject_id=1, subject_type="output", prompt="p", response="r").subject_type is (
        SubjectType.output
    )
    assert ScoreResult(subject_id=1, metric="m").subject_type == "interaction"
    with pytest.raises(ValueError, match="subject_type"):
        Sample(subject_id=1, subject_type="item", prompt="p", response="r")


def test_the_redactor_lives_only_in_core() -> None:
    assert Redactor().redact("mail bob@example.com")[0] == "mail [REDACTED:email]"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evalwatch.ingest.redact")


def test_core_imports_only_the_standard_library_and_pydantic() -> None:
    graph = grimp.build_graph("evalwatch", include_external_packages=True, cache_dir=None)
    core = {"evalwatch.core", *graph.find_descendants("evalwatch.core")}
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "__future__"}
    outside = {
        (module, imported)
        for module in core
        for imported in graph.find_modules_directly_imported_by(module)
        if imported not in core and imported.split(".")[0] not in allowed
    }
    assert outside == set()
    # And the check can fail: the store's models do import a third-party package.
    assert "sqlalchemy" in graph.find_modules_directly_imported_by("evalwatch.storage.models")
