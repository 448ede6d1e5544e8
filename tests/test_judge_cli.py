"""``evalwatch judge``: calibrate, estimate and rubrics from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.commands import judge as judge_commands
from evalwatch.storage.db import make_engine
from evalwatch.testing import FakeJudgeServer

if not any(g.name == "judge" for g in app.registered_groups):
    judge_commands.register(app)

KEY = "sk-cli-test-key-0123456789abcdef"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(expected_api_key=KEY) as srv:
        yield srv


def env_for(srv: FakeJudgeServer, db: Path) -> dict[str, str]:
    return {
        "EVALWATCH_JUDGE__BASE_URL": srv.base_url,
        "EVALWATCH_JUDGE__MODEL": "judge-cli",
        "EVALWATCH_JUDGE__API_KEY": KEY,
        "EVALWATCH_DATABASE_URL": f"sqlite:///{db}",
        "COLUMNS": "200",  # rich wraps at the terminal width
    }


def labels_file(tmp_path: Path) -> Path:
    rows: list[dict[str, Any]] = []
    for i, (j, h, p) in enumerate(
        [(5, 5, "p1"), (2, 2, "p1"), (3, 4, "p2"), (1, 1, "p3"), (4, 4, "p4")]
    ):
        rows.append(
            {
                "id": f"h{i}",
                "rubric": "helpfulness",
                "prompt": p,
                "response": f"answer {i} [[score={j}]]",
                "human_score": h,
            }
        )
    rows.append(
        {
            "id": "c1",
            "rubric": "correctness",
            "prompt": "p",
            "response": "[[score=3]]",
            "reference": "ref",
            "human_score": 3,
        }
    )
    path = tmp_path / "human_labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_without_endpoint_exits_2_with_hint(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["judge", "calibrate", "--labels", str(labels_file(tmp_path))],
        env={"EVALWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "COLUMNS": "200"},
    )
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "EVALWATCH_JUDGE__BASE_URL" in lines[0] and "EVALWATCH_JUDGE__MODEL" in lines[0]


def test_calibrate_prints_and_stores(
    runner: CliRunner, server: FakeJudgeServer, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    res = runner.invoke(
        app,
        ["judge", "calibrate", "--labels", str(labels_file(tmp_path))],
        env=env_for(server, db),
    )
    assert res.exit_code == 0, res.output
    out = res.output
    assert "helpfulness v1 judged by judge-cli: n=5" in out
    assert "correctness v1 judged by judge-cli: n=1" in out
    assert "agreement 0.800" in out and "kappa (quadratic)" in out
    assert "position consistency 1.000 over 1 pairs" in out
    assert "confusion (rows human, columns judge)" in out
    assert KEY not in out
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT rubric, n, agreement FROM judge_calibrations ORDER BY rubric")
        ).all()
    engine.dispose()
    assert [(r[0], r[1]) for r in rows] == [("correctness", 1), ("helpfulness", 5)]
    assert rows[1][2] == pytest.approx(0.8)


def test_calibrate_one_rubric_and_rerun_uses_cache(
    runner: CliRunner, server: FakeJudgeServer, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path / "store.db")
    args = [
        "judge",
        "calibrate",
        "--labels",
        str(labels_file(tmp_path)),
        "--rubric",
        "helpfulness",
        "--max-pairs",
        "0",
    ]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "correctness" not in first.output and "max_pairs=0" in first.output
    n = server.request_count
    assert n == 5
    second = runner.invoke(app, args, env=env)
    assert second.exit_code == 0 and server.request_count == n


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "missing.jsonl"], "does not exist"),
        (["--rubric", "nonsense"], "unknown rubric"),
        (["--rubric", "safety"], "no labelled rows for rubric"),
    ],
)
def test_calibrate_bad_input_exits_2(
    runner: CliRunner, server: FakeJudgeServer, tmp_path: Path, args: list[str], message: str
) -> None:
    labels = labels_file(tmp_path)
    full = ["judge", "calibrate"] + (
        args if "--labels" in args else ["--labels", str(labels), *args]
    )
    res = runner.invoke(app, full, env=env_for(server, tmp_path / "s.db"))
    assert res.exit_code == 2 and message in res.output
    assert server.request_count == 0


def test_calibrate_bad_row_names_the_line(
    runner: CliRunner, server: FakeJudgeServer, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "rubric": "helpfulness"}\n')
    res = runner.invoke(
        app, ["judge", "calibrate", "--labels", str(path)], env=env_for(server, tmp_path / "s.db")
    )
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output


def test_estimate_prints_calls_without_calling(
    runner: CliRunner, server: FakeJudgeServer, tmp_path: Path
) -> None:
    data = tmp_path / "traffic.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "response": f"a{i}", "reference": "r"}) + "\n"
            for i in range(7)
        )
    )
    env = {**env_for(server, tmp_path / "s.db"), "EVALWATCH_JUDGE__PRICES": '{"judge-cli": [1, 2]}'}
    res = runner.invoke(
        app,
        ["judge", "estimate", "--input", str(data), "--rubrics", "helpfulness,correctness"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert "judge estimate: 14 calls (0 of 14 cached)" in res.output and "$" in res.output
    assert server.request_count == 0


def test_rubrics_lists_builtins_and_user_files(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "tone.yaml").write_text(
        "name: tone\nversion: 2\ndescription: Polite?\ncriteria: [Is polite]\n"
    )
    res = runner.invoke(app, ["judge", "rubrics", "--rubric-path", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for name in (
        "helpfulness",
        "correctness",
        "faithfulness",
        "coherence",
        "safety",
        "instruction_following",
        "tone",
    ):
        assert name in res.output


def test_register_adds_a_judge_group() -> None:
    fresh = typer.Typer()
    judge_commands.register(fresh)
    assert [g.name for g in fresh.registered_groups] == ["judge"]
