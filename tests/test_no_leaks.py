"""Issue #17: no secret or raw personal data anywhere it leaves, channel by channel.

One workload runs once over a store whose interactions hold :data:`tests.leak_corpus.HOSTILE_TEXT`
stored raw (as ``ingest --no-redact`` keeps it: the worst case, so every channel must mask on
its own way out) and a feedback/traffic file that is quarantined with the same text in its
fields. Every channel's output is collected, and one parametrised test checks each against the
one corpus (:mod:`tests.leak_corpus`):

* ``cli``: ``ingest``, ``quarantine list`` / ``show``, ``alerts list``, ``runs show`` output;
* ``logs``: every Python log record at DEBUG of the whole workload, and the Prefect flow run's
  logs as the Prefect server stored them;
* ``prefect_artifacts``: the artifacts the ``evaluate-traffic`` flow created;
* ``html_reports``: the run report, the drift report and the overview page;
* ``notifications``: the alert as a real local HTTP receiver got it through a saved Prefect
  webhook block (bodies; the block's token may only be the Authorization header);
* ``judge_requests``: what the judge sent to the fake OpenAI server (every message);
* ``exports``: ``evalwatch export daily`` files;
* ``gate_reports``: the gate's text (terminal, CI log) and markdown (artifact, PR comment) of
  items whose test-set inputs, outputs and judge explanations hold the text.

Real SQLite file, real Prefect test server, real HTTP throughout.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.settings import JudgeSettings, Settings, reset_settings
from tests.leak_corpus import (
    HOSTILE_TEXT,
    JUDGE_API_KEY,
    PII_VALUES,
    WEBHOOK_TOKEN,
    assert_clean,
    leaks,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CHANNELS = (
    "cli",
    "logs",
    "prefect_artifacts",
    "html_reports",
    "notifications",
    "judge_requests",
    "exports",
    "gate_reports",
)


@dataclass
class _Receiver:
    url: str = ""
    bodies: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def receiver() -> Iterator[_Receiver]:
    rec = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.lock:
                rec.bodies.append(body.decode("utf-8", "replace"))
                rec.headers.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)


def _hostile_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"leak-{i}",
            # Two days: the first is the drift check's baseline, the second its current window.
            "ts": T0 + timedelta(minutes=45 * i),
            "app": "support",
            "model_name": "acme",
            "model_version": "v1",
            "prompt": f"Question {i}: {HOSTILE_TEXT}",
            "response": f"Answer {i}, as you asked: {HOSTILE_TEXT}",
            "context": HOSTILE_TEXT,
            "latency_ms": 100.0 + i,
            "cost": 0.001,
            "redactions": 0,
        }
        for i in range(n)
    ]


def _bad_file(path: Path) -> Path:
    rows = [
        # Quarantined: the timestamp is personal data, so the reason would quote it.
        {
            "app": "support",
            "model_name": "m",
            "model_version": "v1",
            "prompt": "hi",
            "response": HOSTILE_TEXT,
            "timestamp": PII_VALUES["email"],
        },
        {
            "app": "support",
            "model_name": "m",
            "model_version": "v1",
            "prompt": HOSTILE_TEXT,
            "response": "ok",
            "timestamp": "2026-11-01T00:00:00Z",
            "latency_ms": PII_VALUES["ip"],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(runner: CliRunner, url: str, *args: str) -> str:
    result = runner.invoke(app, ["--db", url, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def _artifacts_and_logs(flow_run_id: Any) -> tuple[list[str], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [str(a.data) + str(a.description or "") for a in arts], [lg.message for lg in logs]


def _gate_outputs() -> list[str]:
    from evalwatch.checks.policy import GatePolicy
    from evalwatch.checks.regression import GateReport, MetricComparison, WorstItem
    from evalwatch.reporting.gate_report import (
        gate_markdown,
        gate_text,
        worst_items_markdown,
        worst_items_text,
    )

    metric = MetricComparison(
        metric="judge.helpfulness",
        kind="continuous",
        test="paired_bootstrap",
        status="ok",
        confidence=0.95,
        margin=0.0,
        margin_spec="0",
        decision="regression",
    )
    keys = ("input", "baseline_output", "candidate_output", "judge_explanation")
    worst = WorstItem(
        metric="judge.helpfulness",
        item_id="q1",
        baseline=1.0,
        candidate=0.2,
        diff=-0.8,
        details=dict.fromkeys(keys, HOSTILE_TEXT),
    )
    report = GateReport(
        verdict="regression",
        rule="regression",
        alpha=0.05,
        metrics=[metric],
        worst_items=[worst],
        policy=GatePolicy(),
    )
    return [f(report) for f in (gate_text, gate_markdown, worst_items_text, worst_items_markdown)]


@pytest.fixture(scope="module")
def outputs(
    prefect_harness: None, receiver: _Receiver, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Run the whole workload once; everything each channel let out, by channel."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from evalwatch.alerting import evaluate_rules
    from evalwatch.checks.drift.outcome import DriftParams
    from evalwatch.checks.rules import ChannelSpec, DeliveryPolicy, Rule, RulesFile
    from evalwatch.evaluators.base import Sample
    from evalwatch.evaluators.judge import JudgeEvaluator
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.reporting.overview import overview_html
    from evalwatch.runs.drift import check_drift
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.storage.db import make_engine, upgrade
    from evalwatch.storage.overview import load_overview
    from evalwatch.storage.repo import insert_interactions
    from evalwatch.testing import FakeJudgeServer

    tmp = tmp_path_factory.mktemp("leaks")
    url = f"sqlite:///{tmp / 'evalwatch.db'}"
    out: dict[str, list[str]] = {c: [] for c in CHANNELS}
    records = _Records()
    # Everything evalwatch logs, down to DEBUG; the libraries' own records from INFO up
    # (httpx's request lines, Prefect's), without matplotlib's font search.
    root, ours = logging.getLogger(), logging.getLogger("evalwatch")
    old_levels = root.level, ours.level
    root.addHandler(records)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALWATCH_REPORT_DIR", str(tmp / "reports"))
        mp.setenv("EVALWATCH_HASH_KEY", "leak-test")
        mp.delenv("EVALWATCH_REPORT_BASE_URL", raising=False)
        reset_settings()
        try:
            engine = make_engine(url)
            upgrade(engine)
            insert_interactions(engine, _hostile_rows(64))

            # CLI: an ingest that quarantines hostile rows, then what shows them.
            runner = CliRunner()
            bad = _bad_file(tmp / "bad.jsonl")
            out["cli"].append(_cli(runner, url, "ingest", str(bad)))

            # Prefect: the evaluate-traffic flow, its artifacts, its logs, its run report.
            state = evaluate_traffic(
                params=TrafficParams(evaluators=["heuristics"]),
                database_url=url,
                return_state=True,
            )
            assert state.is_completed()
            summary = state.result()
            arts, flow_logs = _artifacts_and_logs(state.state_details.flow_run_id)
            out["prefect_artifacts"] += arts
            out["logs"] += flow_logs
            out["html_reports"].append(Path(summary["report"]).read_text())

            # Notifications: a traffic rule whose offending items carry the text.
            CustomWebhookNotificationBlock(
                name="leak-hook",
                url=receiver.url + "/ops",
                json_data={"subject": "{{subject}}", "body": "{{body}}"},
                headers={"Authorization": "Bearer {{token}}"},
                secrets={"token": WEBHOOK_TOKEN},
            ).save("leak-hook", overwrite=True)
            rules = RulesFile(
                channels={
                    "ops": ChannelSpec(
                        type="webhook", block="custom-webhook/leak-hook", format="json"
                    ),
                    "text": ChannelSpec(type="webhook", block="leak-hook", format="text"),
                },
                delivery=DeliveryPolicy(attempts=1, backoff_s=0.01, max_backoff_s=0.05),
                rules=[
                    Rule(
                        name="slow",
                        selector="latency_ms",
                        aggregation="max",
                        comparison=">",
                        threshold=1.0,
                        window="1d",
                        severity="critical",
                        channels=["ops"],
                        escalation=["text"],
                    ),
                ],
            )
            events = evaluate_rules(engine, rules, now=T0 + timedelta(days=2))
            assert events, "the rule did not fire"
            out["notifications"] += receiver.bodies

            # The judge: what it sends to the (fake) OpenAI endpoint.
            with FakeJudgeServer(expected_api_key=JUDGE_API_KEY) as server:
                settings = JudgeSettings(
                    base_url=server.base_url,
                    model="judge-1",
                    api_key=SecretStr(JUDGE_API_KEY),
                    timeout_s=5.0,
                    max_retries=0,
                )
                judge = JudgeEvaluator(settings=settings, rubrics=["helpfulness", "faithfulness"])
                samples = [
                    Sample(
                        subject_id=i,
                        prompt=f"Q {HOSTILE_TEXT}",
                        response=HOSTILE_TEXT,
                        context=HOSTILE_TEXT,
                        reference=HOSTILE_TEXT,
                    )
                    for i in range(3)
                ]
                judged = judge.evaluate(samples)
                judge.close()
                out["judge_requests"] += [r.all_text for r in server.requests]
                assert all(r.authorized for r in server.requests)
            out["logs"] += [s.reason or "" for s in judged.scores]

            # Drift and overview pages.
            drift_html = tmp / "drift.html"
            check_drift(
                engine,
                DriftParams(
                    current_start=T0 + timedelta(days=1),
                    current_end=T0 + timedelta(days=2),
                    baseline_start=T0,
                    baseline_end=T0 + timedelta(days=1),
                ),
                Settings(),
                html=drift_html,
                alerts=False,
            )
            out["html_reports"].append(drift_html.read_text())
            data = load_overview(engine, T0, T0 + timedelta(days=3))
            out["html_reports"].append(overview_html(data))

            # The rest of the CLI.
            out["cli"].append(_cli(runner, url, "quarantine", "list"))
            for qid in (1, 2):
                out["cli"].append(_cli(runner, url, "quarantine", "show", str(qid)))
            out["cli"].append(_cli(runner, url, "alerts", "list"))
            out["cli"].append(_cli(runner, url, "runs", "show", str(summary["run_id"])))

            # Exports (differentially private aggregates).
            for fmt in ("csv", "json"):
                target = tmp / f"export.{fmt}"
                out["cli"].append(
                    _cli(
                        runner,
                        url,
                        "export",
                        "daily",
                        "--out",
                        str(target),
                        "--format",
                        fmt,
                        "--since",
                        T0.isoformat(),
                        "--until",
                        (T0 + timedelta(days=3)).isoformat(),
                        "--dp-epsilon",
                        "1.0",
                        "--dataset",
                        f"leaks-{fmt}",
                    )
                )
                out["exports"].append(target.read_text() if target.exists() else "")
            engine.dispose()
            out["gate_reports"] += _gate_outputs()
        finally:
            root.removeHandler(records)
            root.setLevel(old_levels[0])
            ours.setLevel(old_levels[1])
            reset_settings()
    out["logs"] += records.texts
    return out


@pytest.mark.parametrize("channel", CHANNELS)
def test_nothing_sensitive_leaves_through(channel: str, outputs: dict[str, list[str]]) -> None:
    assert_clean(outputs[channel], channel)


def test_the_webhook_token_goes_only_where_it_authenticates(
    outputs: dict[str, list[str]], receiver: _Receiver
) -> None:
    assert receiver.headers, "nothing was delivered"
    assert {h.get("Authorization") for h in receiver.headers} == {f"Bearer {WEBHOOK_TOKEN}"}


def test_the_corpus_is_masked_not_dropped(outputs: dict[str, list[str]]) -> None:
    # A channel that drops the text entirely passes the leak test trivially; these carry it
    # masked, which shows the hostile text did go through them.
    for channel in ("notifications", "judge_requests", "html_reports", "gate_reports"):
        assert any("[REDACTED:" in t for t in outputs[channel]), channel
    assert leaks(HOSTILE_TEXT) == list(PII_VALUES)  # the corpus checks what it says it does
