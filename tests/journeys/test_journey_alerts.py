"""Journey: alert rules watch every report, and their notifications arrive as clean JSON.

A user points a rule's channel at a saved Prefect webhook block (a real HTTP receiver on
127.0.0.1) and runs the commands the README lists, on a copy of the store ``make demo``
leaves, whose traffic shifts in its last three days (Nov 12-15 2026). Issue #12:

- defect 1: the payload was redacted as serialized JSON, so a long float that passes the card
  checksum (an effect size, a threshold) was masked mid-number and ``alerts evaluate`` died
  in a ``JSONDecodeError`` traceback. Now the receiver gets valid JSON with the number intact
  and no e-mail, API key or webhook secret in it.
- defect 5: ``evalwatch drift`` and ``evalwatch judge calibrate`` stored reports without
  evaluating the rules, so nothing opened until some later command ran.
- defect 9: ``rules check`` stopped at one problem per rule; ``judge estimate`` printed a raw
  Python dict; tables cut headers and names to "seve…" at 80 columns.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from evalwatch.testing import FakeJudgeServer
from tests.journeys.conftest import (
    DemoStore,
    PrefectServer,
    Receiver,
    Result,
    base_env,
    run_cli,
)

# Passes the Luhn check: redacting serialized JSON turned it into "0.[REDACTED:card]".
LUHN_FLOAT = 0.4111111111111111
EMAIL = "alice.oncall@example.com"
API_KEY = "sk-live-abcdefghijklmnop1234"
HOOK_SECRET = "hook-secret-5f1b9c2e7d"  # the block's own secret, sent only as a header
SHIFTED = ["--current-since", "2026-11-12", "--current-until", "2026-11-15", "--scopes", "overall"]


def save_webhook_block(server: PrefectServer, receiver: Receiver) -> str:
    """Save a custom-webhook block that posts to the receiver; return its block reference."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = f"journey-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        CustomWebhookNotificationBlock(
            name=name,
            url=receiver.url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            headers={"Authorization": "Bearer {{token}}"},
            secrets={"token": HOOK_SECRET},
        ).save(name, overwrite=True)
    return f"custom-webhook/{name}"


def write_rules(path: Path, block: str, *rules: dict[str, Any]) -> Path:
    """A rules file with one JSON webhook channel, ``journey``."""
    doc = {
        "version": 1,
        "channels": {"journey": {"type": "webhook", "block": block, "format": "json"}},
        "delivery": {"attempts": 2, "backoff_s": 0.1, "max_backoff_s": 0.2},
        "rules": [
            {
                "window": "run",
                "aggregation": "any",
                "severity": "warning",
                "channels": ["journey"],
                "cooldown": "0s",
                **r,
            }
            for r in rules
        ],
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def payloads(receiver: Receiver) -> list[dict[str, Any]]:
    """Every notification's alert payload; each request must be valid JSON with no secret."""
    out = []
    for req in receiver.requests:
        raw = req["body"]
        assert req["json"] is not None, f"not JSON: {raw}"
        for secret in (EMAIL, API_KEY, HOOK_SECRET, "Bearer"):
            assert secret not in raw, f"{secret!r} left in a notification: {raw}"
        assert req["headers"].get("Authorization") == f"Bearer {HOOK_SECRET}"
        out.append(json.loads(req["json"]["body"]))  # the json channel format: strict JSON
    return out


def alert_lines(res: Result, rule: str) -> list[str]:
    return [line for line in res.stdout.splitlines() if rule in line and "alert" in line]


@pytest.mark.slow
def test_drift_opens_an_alert_and_its_notification_is_clean_json(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer, receiver: Receiver
) -> None:
    block = save_webhook_block(prefect_server, receiver)
    rules = write_rules(
        user_dir / "rules.yaml",
        block,
        {
            "name": "journey-drift",
            "description": f"Drift found: tell {EMAIL} (deploy key {API_KEY})",
            "selector": "drift.verdict",
            "comparison": ">=",
            "threshold": LUHN_FLOAT,  # verdicts are 0 or 1: the same as '== 1'
        },
    )
    env = base_env(PREFECT_API_URL=prefect_server.api_url, EVALWATCH_DATABASE_URL=store.url)

    # 1. The shipped rules: drift itself opens drift-found (defect 5), exit 1 for drift.
    drift = run_cli("drift", *SHIFTED, cwd=user_dir, env=env)
    assert drift.code == 1, str(drift)
    assert alert_lines(drift, "drift-found"), f"drift opened no alert:\n{drift}"

    # 2. The user's rules: the first evaluation judges the newest report, the shifted one,
    # and the notification carries the long float intact (defect 1).
    env["EVALWATCH_RULES_FILE"] = str(rules)
    evaluated = run_cli("alerts", "evaluate", cwd=user_dir, env=env)
    assert evaluated.code == 0, str(evaluated)
    assert "open alert" in evaluated.out and "journey-drift" in evaluated.out
    assert "(notified 1 channel(s))" in evaluated.out, str(evaluated)
    (first,) = payloads(receiver)
    assert (first["rule"], first["event"], first["status"]) == ("journey-drift", "open", "open")
    assert first["threshold"] == LUHN_FLOAT
    assert "[REDACTED:email]" in first["description"]
    assert "[REDACTED:secret]" in first["description"]
    assert first["offending"] and all(
        isinstance(i["effect_size"], float) for i in first["offending"]
    )
    assert first["links"]["report"]

    # 3. Another drift check with the user's rules: the alert is updated and notified again.
    again = run_cli(
        "drift",
        "--current-since",
        "2026-11-13",
        "--current-until",
        "2026-11-15",
        "--scopes",
        "overall",
        cwd=user_dir,
        env=env,
    )
    assert again.code == 1, str(again)
    assert alert_lines(again, "journey-drift"), str(again)
    assert len(receiver.wait_for(2)) == 2
    second = payloads(receiver)[1]
    assert (second["alert_id"], second["event"]) == (first["alert_id"], "update")
    assert second["links"]["report"] != first["links"]["report"]

    # 4. The alerts as a user on an 80-column terminal sees them: nothing cut to "…".
    listed = run_cli("alerts", "list", cwd=user_dir, env=env | {"COLUMNS": "80"})
    assert listed.code == 0, str(listed)
    assert "…" not in listed.stdout, listed.stdout
    assert "journey-drift" in listed.stdout and "warning" in listed.stdout


@pytest.mark.slow
def test_a_kappa_drop_from_calibrate_opens_an_alert_by_itself(
    user_dir: Path, prefect_server: PrefectServer, receiver: Receiver
) -> None:
    block = save_webhook_block(prefect_server, receiver)
    rules = write_rules(
        user_dir / "rules.yaml",
        block,
        {
            "name": "journey-kappa",
            "description": f"Judge disagrees with humans; ask {EMAIL}",
            "selector": "judge.kappa",
            "comparison": "<",
            "threshold": 0.6,
            "scope": {"rubric": "each"},
        },
    )
    # The judge gives each response the score in its marker; the humans disagree.
    judged = [5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 1]
    human = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 5]
    labels = user_dir / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"h{i}",
                    "rubric": "helpfulness",
                    "prompt": f"question {i}?",
                    "response": f"answer {i} [[score={j}]]",
                    "human_score": h,
                }
            )
            + "\n"
            for i, (j, h) in enumerate(zip(judged, human, strict=True))
        )
    )
    with FakeJudgeServer(expected_api_key="sk-journey-judge-0123456789") as judge:
        env = base_env(
            PREFECT_API_URL=prefect_server.api_url,
            EVALWATCH_DATABASE_URL=f"sqlite:///{user_dir / 'store.db'}",
            EVALWATCH_RULES_FILE=str(rules),
            EVALWATCH_JUDGE__BASE_URL=judge.base_url,
            EVALWATCH_JUDGE__MODEL="judge-journey",
            EVALWATCH_JUDGE__API_KEY="sk-journey-judge-0123456789",
            EVALWATCH_JUDGE__PRICES='{"judge-journey": [1, 2]}',
        )
        # Only calibrate runs: its stored calibration is judged at once (defect 5).
        res = run_cli(
            "judge", "calibrate", "--labels", str(labels), "--max-pairs", "0", cwd=user_dir, env=env
        )
        assert res.code == 0, str(res)
        assert alert_lines(res, "journey-kappa"), f"calibrate opened no alert:\n{res}"
        (payload,) = payloads(receiver)
        assert (payload["rule"], payload["event"]) == ("journey-kappa", "open")
        assert payload["scope"] == {"rubric": "helpfulness"}
        (calibration,) = payload["offending"]
        assert calibration["value"] < 0.6 and calibration["rubric"] == "helpfulness"
        assert "[REDACTED:email]" in payload["description"]

        # The cost estimate, readable at 80 columns: a table, not a Python dict (defect 9).
        traffic = user_dir / "traffic.jsonl"
        traffic.write_text(
            "".join(
                json.dumps({"prompt": f"new question {i}?", "response": f"new answer {i}"}) + "\n"
                for i in range(12)
            )
        )
        est = run_cli(
            "judge",
            "estimate",
            "--input",
            str(traffic),
            "--rubrics",
            "helpfulness",
            cwd=user_dir,
            env=env | {"COLUMNS": "80"},
        )
        assert est.code == 0, str(est)
        assert "{" not in est.stdout and "…" not in est.stdout, est.stdout
        assert "judge estimate: 12 calls" in est.out
        row = next(line for line in est.stdout.splitlines() if "judge-journey" in line)
        assert "12" in row and "$" in row
        assert judge.request_count == len(judged)  # the estimate called nothing


def test_rules_check_reports_every_problem_of_every_rule(user_dir: Path) -> None:
    bad = user_dir / "bad-rules.yaml"
    bad.write_text(
        "channels:\n"
        "  ops: {type: webhook, block: custom-webhook/ops}\n"
        "rules:\n"
        "  - name: broken\n"
        "    selector: nope.metric\n"
        "    comparison: '<'\n"
        "    threshold: 0.5\n"
        "    window: 90x\n"
        "    channels: [opz]\n"
        "    scope: {colour: each}\n"
        "  - name: other\n"
        "    selector: judge.helpfulness\n"
        "    comparison: '<'\n"
        "    threshold: 0.5\n"
        "    channels: [ghost]\n"
    )
    res = run_cli("rules", "check", "bad-rules.yaml", cwd=user_dir, env=base_env(COLUMNS="80"))
    assert res.code == 2, str(res)
    for problem in (
        "rule 'broken': window: bad duration '90x'",
        "rule 'broken': selector: unknown metric 'nope.metric'",
        "rule 'broken': channels: unknown channel 'opz'",
        "rule 'broken': scope: 'colour' is not a dimension",
        "rule 'other': channels: unknown channel 'ghost'",
    ):
        assert problem in res.out, f"{problem!r} not reported:\n{res}"
    assert "5 problem(s)" in res.out
