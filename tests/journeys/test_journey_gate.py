"""Journey: the CI gate from a clean clone.

A store is built in one directory (``evalwatch demo``, from the checkout's ``datasets/``); CI
then checks the repository out somewhere else and, from there, runs the README's gate command
with relative paths. The predictions file it names is the same content at another path, so it
must resolve to the outputs already stored (issue #12, defect 2), and the exit codes are the
ones a deploy pipeline trusts: 0 equivalent, 1 degraded (naming its slice), 2 bad input,
3 the store cannot be reached.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.journeys.conftest import DemoStore, PrefectServer, base_env, free_port, run_cli

POLICY = "datasets/gate-policy.example.yaml"
DEGRADED = "datasets/support-qa.predictions.candidate-degraded.jsonl"
EQUIVALENT = "datasets/support-qa.predictions.candidate-equivalent.jsonl"


def _gate(candidate: str, *extra: str) -> list[str]:
    """The README's gate command (docs/gate.md) with relative paths."""
    return [
        "gate",
        "--dataset",
        "support-qa",
        "--baseline-model",
        "acme-chat-v1.0",
        "--candidate-outputs",
        candidate,
        "--policy",
        POLICY,
        "--no-progress",
        *extra,
    ]


def _env(store: DemoStore, server: PrefectServer) -> dict[str, str]:
    # A failed gate opens an alert, delivered through Prefect notification blocks: CI points
    # at its Prefect server. (Without one, Prefect starts a temporary server per call.)
    return base_env(EVALWATCH_DATABASE_URL=store.url, PREFECT_API_URL=server.api_url)


def _outputs(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM model_outputs").fetchone()[0])


def test_gate_from_another_checkout_with_relative_paths(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer
) -> None:
    # The store was built from the checkout's datasets/; this is a copy elsewhere (CI's clone).
    assert not (user_dir / DEGRADED).resolve().is_relative_to(Path(__file__).parents[2])
    env = _env(store, prefect_server)
    before = _outputs(store.db)

    ok = run_cli(*_gate(EQUIVALENT), cwd=user_dir, env=env)
    assert ok.code == 0, str(ok)
    assert "PASS" in ok.out

    bad = run_cli(*_gate(DEGRADED), cwd=user_dir, env=env)
    assert bad.code == 1, str(bad)
    assert "REGRESSION" in bad.out and "slice 'billing' regressed" in bad.out

    # The same predictions copied under another name resolve to the same stored outputs.
    copy = user_dir / "ci" / "candidate.jsonl"
    copy.parent.mkdir()
    shutil.copy2(user_dir / DEGRADED, copy)
    again = run_cli(*_gate("ci/candidate.jsonl"), cwd=user_dir, env=env)
    assert again.code == 1, str(again)
    assert "slice 'billing' regressed" in again.out
    assert _outputs(store.db) == before, "a known predictions file must not add model outputs"


def test_gate_bad_input_exits_2(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer
) -> None:
    env = _env(store, prefect_server)
    missing = run_cli(*_gate("datasets/no-such-predictions.jsonl"), cwd=user_dir, env=env)
    assert missing.code == 2, str(missing)
    assert "no-such-predictions.jsonl does not exist" in missing.out

    # An unknown baseline model: the error names it and the models that have answers.
    unknown = run_cli(
        *[a if a != "acme-chat-v1.0" else "production" for a in _gate(EQUIVALENT)],
        cwd=user_dir,
        env=env,
    )
    assert unknown.code == 2, str(unknown)
    assert "model 'production' has no stored answers" in unknown.out
    assert "acme-chat-v1.0 (250 items)" in unknown.out


def test_gate_with_an_unreachable_store_exits_3(user_dir: Path) -> None:
    # A PostgreSQL URL on a port nobody listens on: the work cannot be carried out.
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/evalwatch"
    res = run_cli(*_gate(DEGRADED), cwd=user_dir, env=base_env(EVALWATCH_DATABASE_URL=url))
    assert res.code == 3, str(res)
