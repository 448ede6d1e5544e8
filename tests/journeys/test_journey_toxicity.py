"""Journeys: toxicity scores real text offline, and the demo runs the judge when one is set.

Before issue #14, ``toxicity`` without a detoxify checkpoint was "unavailable, skipped" on a
machine without downloads (this one, CI, the demo), and a configured judge endpoint made the
demo judge all 5,000 interactions with no estimate first and no judge gate. Now the embedded
model scores and says that it does, and a configured judge gets a bounded, estimated sample in
the demo and a judge gate.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from evalwatch.testing import FakeJudgeServer
from tests.journeys.conftest import DemoStore, PrefectServer, base_env, run_cli

pytestmark = pytest.mark.journey

TOXIC = ["you are an idiot, I hate you", "Shut up, you stupid moron. Nobody cares."]
FRIENDLY = ["thank you, have a nice day", "Happy to help! Your refund is on its way."]


def _traffic_file(folder: Path) -> Path:
    path = folder / "my_traffic.jsonl"
    rows = [
        {
            "request_id": f"tox-{i}",
            "timestamp": f"2026-11-20T10:{i:02d}:00Z",
            "app": "support-bot",
            "model_name": "acme-chat",
            "model_version": "v2",
            "prompt": "Where is my refund?",
            "response": text,
        }
        for i, text in enumerate(TOXIC + FRIENDLY)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_toxicity_scores_a_users_traffic_offline_with_the_embedded_model(user_dir: Path) -> None:
    db = user_dir / "mine.db"
    store = ["--db", f"sqlite:///{db.name}"]
    ingested = run_cli(*store, "ingest", str(_traffic_file(user_dir).name), cwd=user_dir)
    assert ingested.code == 0, str(ingested)

    res = run_cli(*store, "evaluate", "--evaluators", "toxicity", "--no-progress", cwd=user_dir)
    assert res.code == 0, str(res)
    assert "unavailable" not in res.out, str(res)
    table = re.findall(r"toxicity\s*│\s*(\w+)\s*│\s*4\s*│", res.stdout)
    assert table == ["offensive", "safety"], res.stdout  # no label the model does not have
    # It says which model scored, and why not detoxify (HF_HUB_OFFLINE is set here).
    assert "embedded alt-profanity-check==" in res.out
    assert "HF_HUB_OFFLINE" in res.out

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT i.response, s.value FROM scores s JOIN interactions i ON i.id = s.subject_id "
            "WHERE s.evaluator = 'toxicity' AND s.metric = 'safety' AND s.status = 'ok'"
        ).fetchall()
        configs = conn.execute("SELECT evaluators FROM eval_runs").fetchall()
    safety = dict(rows)
    assert set(safety) == set(TOXIC + FRIENDLY)
    for text in TOXIC:
        assert safety[text] < 0.5, (text, safety[text])
    for text in FRIENDLY:
        assert safety[text] > 0.8, (text, safety[text])
    # The run records the backend that scored, not "auto".
    recorded = json.loads(configs[-1][0])["toxicity"]["config"]
    assert recorded["backend"] == "alt-profanity-check"
    assert recorded["model"].startswith("alt-profanity-check==")


def test_demo_without_a_judge_names_the_settings_that_turn_it_on(demo_store: DemoStore) -> None:
    lines = [ln for ln in demo_store.output.splitlines() if ln.startswith("judge:")]
    assert len(lines) == 1, demo_store.output
    # One line naming the settings to set (the slow journey below sets exactly these).
    assert re.search(r"EVALWATCH_JUDGE__?BASE_URL", lines[0]), lines[0]
    assert re.search(r"EVALWATCH_JUDGE__?MODEL", lines[0]), lines[0]


@pytest.mark.slow
def test_demo_scores_toxicity_and_runs_a_bounded_judge_sample_and_judge_gate(
    tmp_path: Path, prefect_server: PrefectServer
) -> None:
    cwd = tmp_path / "demo-user"
    cwd.mkdir()
    with FakeJudgeServer(expected_api_key="sk-demo-journey-0123456789") as judge:
        env = base_env(
            PREFECT_API_URL=prefect_server.api_url,
            EVALWATCH_JUDGE__BASE_URL=judge.base_url,
            EVALWATCH_JUDGE__MODEL="judge-demo",
            EVALWATCH_JUDGE__API_KEY="sk-demo-journey-0123456789",
        )
        res = run_cli(
            "demo",
            "--out",
            "demo-out",
            "--evaluators",
            "heuristics,toxicity",
            cwd=cwd,
            env=env,
            timeout=1500,
        )
        calls = judge.request_count
    assert res.code == 0, str(res)
    out = res.out
    # Toxicity: real scores from the embedded model in the traffic summary.
    assert "toxicity.offensive" in out and "toxicity.safety" in out
    assert "toxicity: scored by alt-profanity-check==" in out
    # The judge: the estimate first, then a bounded sample, then gates that include it.
    assert out.index("judge estimate:") < out.index("3b. the judge on 50 sampled interactions")
    assert "judge.helpfulness" in out
    estimated = sum(int(n) for n in re.findall(r"judge estimate: (\d+) calls", out))
    assert 0 < calls <= estimated, (calls, estimated)
    gates = re.findall(r"judged \(support-qa-judged, 50 items\): (\w+) \(exit \d\), (.*?);", out)
    assert len(gates) == 2, out
    assert all("judge.correctness" in means and "not compared" not in means for _, means in gates)
    assert "sk-demo-journey" not in out  # the key never reaches the output
